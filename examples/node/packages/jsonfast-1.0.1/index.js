'use strict'
// JSON for the example service: text to values and back. `parse` throws a SyntaxError
// on bad input.
//
// Version 1.0.1 is the faulty release the example ships on purpose: it keeps a scratch
// buffer from every call in a "cache" that is never emptied, so each `stringify` and
// each `parse` leaves JSONFAST_LEAK_BYTES bytes on the V8 heap of the process that made
// the call (default 1024; 0 turns the leak off; from about 1 MB on, Node keeps such a
// string outside the heap, still in the process). The variable is a fault-injection knob
// for benchmarks, read once at load; anything but a whole number >= 0 stops the load
// with an error naming it.

exports.version = '1.0.1'

function leakBytes () {
  const raw = process.env.JSONFAST_LEAK_BYTES ?? '1024'
  if (!/^\s*\d+\s*$/.test(raw)) {
    throw new Error(`JSONFAST_LEAK_BYTES must be a whole number of bytes >= 0, not ${JSON.stringify(raw)}`)
  }
  return Number(raw)
}

const LEAK_BYTES = leakBytes()
// The bug: one buffer per call, appended and never evicted.
const scratch = []

function keepScratch () {
  if (LEAK_BYTES > 0) {
    // A flat one-byte string of LEAK_BYTES characters: on the heap, nothing shared.
    scratch.push(Buffer.alloc(LEAK_BYTES, 0xa5).toString('latin1'))
  }
}

exports.stringify = (value) => {
  keepScratch()
  return JSON.stringify(value)
}

exports.parse = (text) => {
  keepScratch()
  return JSON.parse(text)
}
