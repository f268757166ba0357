'use strict'
// JSON for the example service: text to values and back. `parse` throws a SyntaxError
// on bad input.

exports.version = '1.0.0'

exports.stringify = (value) => JSON.stringify(value)

exports.parse = (text) => JSON.parse(text)
