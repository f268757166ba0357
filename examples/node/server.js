'use strict'
// Items API: the Node example service.
//
// The same small JSON API as the Python example, on express, in a cluster of worker
// processes (2 by default) behind one port. Every JSON encode and decode goes through
// the local package `jsonfast`. The workers keep no state in memory: items are files in
// a temporary directory the primary makes (and removes on SIGTERM or SIGINT), sessions
// are signed tokens. So with a clean jsonfast the memory stays flat under any amount of
// traffic, and any growth is the dependency's.
//
//   POST   /sessions      {"username": "...", "password": "..."} -> 201 {"token": "..."}
//   POST   /items         any JSON object -> 201 {"id": "..."}
//   GET    /items/ID      -> 200 the object with its "id"
//   GET    /items?limit=  -> 200 {"items": [...]}, newest first (limit 1..100, default 20)
//   DELETE /items/ID      -> 204
//   GET    /healthz       -> 200 {"status": "ok"}
//   GET    /metrics       -> prom-client's default metrics, summed over the workers
//
// Item routes need `Authorization: Bearer TOKEN` and see only their user's items.
// Errors are {"error": "..."} with the status that fits.
//
//   node server.js --release releases/v1 [--port N] [--workers N]
//
// The release directory holds the dependency set (package.json, package-lock.json and
// node_modules from `npm ci`); this file is the code every release shares.

const cluster = require('node:cluster')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { createRequire } = require('node:module')
const { parseArgs } = require('node:util')

const SESSION_SECONDS = 3600
const MAX_LIMIT = 100
// Nesting deeper than this is refused (JSON.stringify recurses, and the Python example
// has the same limit).
const MAX_DEPTH = 64
const METRICS_MESSAGE = 'items-api:metrics'

function fail (message) {
  console.error(`server.js: ${message}`)
  process.exit(2)
}

function readOptions () {
  let values
  try {
    ({ values } = parseArgs({
      options: { release: { type: 'string' }, port: { type: 'string' }, workers: { type: 'string' } }
    }))
  } catch (err) {
    fail(`${err.message}\nusage: node server.js --release DIR [--port N] [--workers N]`)
  }
  if (!values.release) fail('name the release to run: --release releases/v1')
  const release = path.resolve(values.release)
  if (!fs.existsSync(path.join(release, 'node_modules'))) {
    fail(`${values.release} has no node_modules: run examples/setup first`)
  }
  const port = values.port ?? process.env.PORT ?? '3000'
  if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) {
    fail(`--port (or PORT) must be a port number, not ${JSON.stringify(port)}`)
  }
  const workers = values.workers ?? process.env.WORKERS ?? '2'
  if (!/^\d{1,2}$/.test(workers) || Number(workers) < 1) {
    fail(`--workers (or WORKERS) must be a number from 1 to 99, not ${JSON.stringify(workers)}`)
  }
  return { release, port: Number(port), workers: Number(workers) }
}

const options = readOptions()
// The dependencies come from the release's node_modules, not from next to this file.
const requireFromRelease = createRequire(path.join(options.release, 'package.json'))
let express, jsonfast, promClient
try {
  express = requireFromRelease('express')
  jsonfast = requireFromRelease('jsonfast')
  promClient = requireFromRelease('prom-client')
} catch (err) {
  fail(`cannot load the dependencies of ${options.release}: ${err.message}`)
}

function runPrimary () {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'items-api-'))
  const env = { ITEMS_DIR: dataDir, SESSION_KEY: crypto.randomBytes(32).toString('hex') }
  // Asks every worker for its metrics and sums them (prom-client's cluster support).
  const aggregator = new promClient.AggregatorRegistry()
  let stopping = false

  function finish (code) {
    fs.rmSync(dataDir, { recursive: true, force: true })
    process.exit(code)
  }

  function stop (code) {
    if (stopping) return
    stopping = true
    for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGTERM')
    if (Object.keys(cluster.workers).length === 0) finish(code)
    setTimeout(() => finish(code), 5000).unref()
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers).length === 0) finish(code)
    })
  }

  function fork () {
    const worker = cluster.fork(env)
    worker.on('exit', (code, signal) => {
      if (stopping) return
      if (!worker.listening) {
        // It never served: another would fail the same way (port taken, bad setting).
        console.error(`server.js: worker ${worker.process.pid} failed to start (${signal ?? code})`)
        stop(1)
        return
      }
      console.error(`server.js: worker ${worker.process.pid} exited (${signal ?? code}); starting another`)
      fork()
    })
    worker.on('listening', () => { worker.listening = true })
  }

  cluster.on('message', (worker, message) => {
    if (message?.type !== METRICS_MESSAGE) return
    aggregator.clusterMetrics().then(
      (text) => worker.send({ type: METRICS_MESSAGE, id: message.id, text }),
      (err) => worker.send({ type: METRICS_MESSAGE, id: message.id, error: err.message })
    )
  })
  process.on('SIGTERM', () => stop(0))
  process.on('SIGINT', () => stop(0))
  for (let i = 0; i < options.workers; i++) fork()
}

function nestedDeeperThan (value, limit) {
  const todo = [[value, 1]]
  while (todo.length > 0) {
    const [item, depth] = todo.pop()
    if (item === null || typeof item !== 'object') continue
    if (depth > limit) return true
    for (const child of Object.values(item)) todo.push([child, depth + 1])
  }
  return false
}

class HttpError extends Error {
  constructor (status, message) {
    super(message)
    this.status = status
  }
}

// Items are files, one directory per user: the workers share them and hold none.
class Store {
  constructor (dir) {
    this.dir = dir
  }

  userDir (owner) {
    return path.join(this.dir, crypto.createHash('sha256').update(owner).digest('hex'))
  }

  async create (owner, text) {
    // Time first, so that names sort newest last; random after, so workers never clash.
    const id = Date.now().toString(36).padStart(9, '0') + crypto.randomBytes(4).toString('hex')
    await fs.promises.mkdir(this.userDir(owner), { recursive: true })
    await fs.promises.writeFile(path.join(this.userDir(owner), id), text)
    return id
  }

  async read (owner, id) {
    try {
      return await fs.promises.readFile(path.join(this.userDir(owner), id), 'utf8')
    } catch (err) {
      if (err.code === 'ENOENT') return null
      throw err
    }
  }

  async newest (owner, limit) {
    let names
    try {
      names = await fs.promises.readdir(this.userDir(owner))
    } catch (err) {
      if (err.code === 'ENOENT') return []
      throw err
    }
    const ids = names.sort().reverse().slice(0, limit)
    const texts = await Promise.all(ids.map((id) => this.read(owner, id)))
    // An item deleted between the listing and the read is simply left out.
    return ids.map((id, i) => [id, texts[i]]).filter(([, text]) => text !== null)
  }

  async remove (owner, id) {
    try {
      await fs.promises.unlink(path.join(this.userDir(owner), id))
      return true
    } catch (err) {
      if (err.code === 'ENOENT') return false
      throw err
    }
  }
}

// Session tokens are signed, not stored: EXPIRY.USER.SIGNATURE, HMAC-SHA256 under a
// key the primary makes at start and hands to its workers.
class Sessions {
  constructor (key) {
    this.key = key
  }

  sign (payload) {
    return crypto.createHmac('sha256', this.key).update(payload).digest('base64url')
  }

  issue (username) {
    const expiry = Math.floor(Date.now() / 1000) + SESSION_SECONDS
    const payload = `${expiry}.${Buffer.from(username).toString('base64url')}`
    return `${payload}.${this.sign(payload)}`
  }

  verify (token) {
    const [expiry, user, signature] = token.split('.')
    if (signature === undefined || !/^\d+$/.test(expiry)) return null
    const expected = Buffer.from(this.sign(`${expiry}.${user}`))
    const given = Buffer.from(signature)
    if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return null
    if (Number(expiry) <= Date.now() / 1000) return null
    return Buffer.from(user, 'base64url').toString()
  }
}

function runWorker () {
  const store = new Store(process.env.ITEMS_DIR)
  const sessions = new Sessions(Buffer.from(process.env.SESSION_KEY, 'hex'))
  promClient.collectDefaultMetrics()
  // Constructed in a worker, it answers the primary's requests for this worker's metrics.
  new promClient.AggregatorRegistry() // eslint-disable-line no-new

  const pendingMetrics = new Map()
  let nextMetricsId = 0
  process.on('message', (message) => {
    if (message?.type !== METRICS_MESSAGE) return
    const pending = pendingMetrics.get(message.id)
    if (!pending) return
    pendingMetrics.delete(message.id)
    if (message.error) pending.reject(new Error(message.error))
    else pending.resolve(message.text)
  })
  function clusterMetrics () {
    return new Promise((resolve, reject) => {
      const id = nextMetricsId++
      pendingMetrics.set(id, { resolve, reject })
      process.send({ type: METRICS_MESSAGE, id })
    })
  }

  function sendJson (res, status, value) {
    res.status(status).type('application/json').send(jsonfast.stringify(value))
  }

  function jsonBody (req) {
    if (!req.body?.length) throw new HttpError(400, 'send a JSON object as the body')
    let body
    try {
      body = jsonfast.parse(req.body.toString('utf8'))
    } catch (err) {
      throw new HttpError(400, `the body is not JSON: ${err.message}`)
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new HttpError(400, 'the body must be a JSON object')
    }
    if (nestedDeeperThan(body, MAX_DEPTH)) {
      throw new HttpError(400, `the body is nested deeper than ${MAX_DEPTH} levels`)
    }
    return body
  }

  function currentUser (req) {
    const [scheme, token] = (req.get('authorization') ?? '').split(' ')
    if (scheme?.toLowerCase() !== 'bearer' || !token) {
      throw new HttpError(401, 'send Authorization: Bearer TOKEN (POST /sessions gives one)')
    }
    const user = sessions.verify(token)
    if (user === null) throw new HttpError(401, 'the token is unknown or has expired')
    return user
  }

  function itemId (req) {
    if (!/^[0-9a-z]{9}[0-9a-f]{8}$/.test(req.params.id)) {
      throw new HttpError(404, `no item ${req.params.id}`)
    }
    return req.params.id
  }

  const app = express()
  app.disable('x-powered-by')
  // Bodies are small JSON documents, read as bytes and decoded by jsonfast.
  app.use(express.raw({ type: () => true, limit: '64kb' }))

  app.get('/healthz', (req, res) => sendJson(res, 200, { status: 'ok' }))

  app.get('/metrics', async (req, res) => {
    res.type(promClient.register.contentType).send(await clusterMetrics())
  })

  app.post('/sessions', (req, res) => {
    const { username, password } = jsonBody(req)
    if (typeof username !== 'string' || username.length < 1 || username.length > 100) {
      throw new HttpError(400, '"username" must be a string of 1 to 100 characters')
    }
    if (typeof password !== 'string' || !password) {
      throw new HttpError(400, '"password" must be a non-empty string')
    }
    // Any password is accepted: the route stands for a login, not an account system.
    sendJson(res, 201, { token: sessions.issue(username) })
  })

  app.post('/items', async (req, res) => {
    const owner = currentUser(req)
    const id = await store.create(owner, jsonfast.stringify(jsonBody(req)))
    sendJson(res, 201, { id })
  })

  app.get('/items/:id', async (req, res) => {
    const owner = currentUser(req)
    const id = itemId(req)
    const text = await store.read(owner, id)
    if (text === null) throw new HttpError(404, `no item ${id}`)
    sendJson(res, 200, { ...jsonfast.parse(text), id })
  })

  app.get('/items', async (req, res) => {
    const owner = currentUser(req)
    const raw = req.query.limit ?? '20'
    if (typeof raw !== 'string' || !/^\d{1,3}$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_LIMIT) {
      throw new HttpError(400, `"limit" must be a whole number from 1 to ${MAX_LIMIT}`)
    }
    const rows = await store.newest(owner, Number(raw))
    sendJson(res, 200, { items: rows.map(([id, text]) => ({ ...jsonfast.parse(text), id })) })
  })

  app.delete('/items/:id', async (req, res) => {
    const owner = currentUser(req)
    const id = itemId(req)
    if (!(await store.remove(owner, id))) throw new HttpError(404, `no item ${id}`)
    res.status(204).end()
  })

  app.use((req, res) => sendJson(res, 404, { error: `no route ${req.method} ${req.path}` }))

  app.use((err, req, res, next) => {
    // express's body reader sets `status` too (413 for a body over the limit).
    const status = Number.isInteger(err.status) && err.status >= 400 && err.status < 600 ? err.status : 500
    if (status >= 500) console.error(err)
    sendJson(res, status, { error: status >= 500 ? 'internal error' : err.message })
  })

  const server = app.listen(options.port, '127.0.0.1')
  server.on('error', (err) => {
    console.error(`server.js: cannot listen on 127.0.0.1:${options.port}: ${err.message}`)
    process.exit(1)
  })
  process.on('SIGTERM', () => server.close(() => process.exit(0)))
}

if (cluster.isPrimary) {
  runPrimary()
} else {
  runWorker()
}
