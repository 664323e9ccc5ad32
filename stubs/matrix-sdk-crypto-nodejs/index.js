// Every export is undefined: importing succeeds, and any real use of Rust crypto fails at the call site.
// See README "Why there is a stub crypto package".
module.exports = new Proxy({}, { get: (_target, name) => (name === '__esModule' ? false : undefined) })
