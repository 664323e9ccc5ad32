'use strict'
// Stops at once, with one sentence, when this Node.js is older than package.json's `engines.node`.
// Older Node fails far less helpfully: it cannot load the TypeScript sources (ERR_UNKNOWN_FILE_EXTENSION
// ".ts") or runs the test suite for many minutes to dozens of failures. So this file is plain CommonJS
// that any Node can parse, runs before any TypeScript is loaded, and takes the version from package.json
// so that there is one place to change it. Loading it checks: bin/relay-bridge.js imports it first,
// `npm start` preloads it (--require) and `npm test` runs it (pretest); `node bin/check-node.cjs` alone.
var fs = require('fs')
var path = require('path')

var PACKAGE_JSON = path.join(__dirname, '..', 'package.json')

/** "22.18" or "v22.18.0" → [22, 18, 0]. */
function parseVersion(text) {
  var m = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(String(text).trim())
  if (!m) return undefined
  return [Number(m[1]), Number(m[2] || 0), Number(m[3] || 0)]
}

/** The lowest version an `engines.node` range of the form ">=X[.Y[.Z]]" allows, e.g. "22.18". */
function minimumOf(range) {
  var m = /^\s*>=\s*v?(\d+(?:\.\d+){0,2})\s*$/.exec(String(range))
  if (!m) {
    throw new Error('bin/check-node.cjs understands only an engines.node range of the form ">=X.Y.Z", not "' + range +
      '": write it that way in package.json or teach the check the new form.')
  }
  return m[1]
}

/** Whether `version` (e.g. process.version) is at least `minimum` (e.g. "22.18"), compared number by number. */
function atLeast(version, minimum) {
  var have = parseVersion(version)
  var need = parseVersion(minimum)
  if (!have || !need) return false
  for (var i = 0; i < 3; i++) {
    if (have[i] !== need[i]) return have[i] > need[i]
  }
  return true
}

/** The sentence for a Node that is too old, or undefined when `version` is new enough. */
function problem(version, range) {
  var minimum = minimumOf(range)
  if (atLeast(version, minimum)) return undefined
  return 'relay-bridge needs Node.js ' + minimum + ' or newer (engines.node "' + range + '" in package.json), but this is Node.js ' +
    String(version).replace(/^v/, '') + ' (' + process.execPath + '): install Node.js 24 LTS and run it again.'
}

function requiredRange() {
  return JSON.parse(fs.readFileSync(PACKAGE_JSON, 'utf8')).engines.node
}

/** Prints the sentence and exits with status 1 when this Node is too old; otherwise returns. */
function exitUnlessSupported() {
  var sentence = problem(process.version, requiredRange())
  if (sentence) {
    process.stderr.write(sentence + '\n')
    process.exit(1)
  }
}

module.exports = { atLeast: atLeast, minimumOf: minimumOf, problem: problem, requiredRange: requiredRange, exitUnlessSupported: exitUnlessSupported }

exitUnlessSupported()
