// Node prints a deprecation warning as a plain line on stderr, which lands among the bridge's JSON logs.
// One dependency still calls util._extend (DEP0060) at every start, which the operator can do nothing
// about: that one warning is dropped here. Every other warning is printed as Node prints it.
// Imported first by the command line, before any dependency loads.
const printers = process.listeners('warning')
process.removeAllListeners('warning')
process.on('warning', (warning: Error & { code?: string }) => {
  if (warning.code === 'DEP0060') return
  for (const print of printers) print.call(process, warning)
})
