// How the operator runs the command line, for every sentence that tells them to run it. In a checkout
// `relay-bridge` is not on PATH, but `npx relay-bridge` finds the package's own bin there, and it is also
// what works where the package is installed.
export const CLI = 'npx relay-bridge'
