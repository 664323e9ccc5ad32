// Runs the real CLI as a child process.
import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { spawnChild, stopChild } from './children.ts'
import { PATIENCE_MS } from './patience.ts'

export const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))

export interface Run {
  code: number | null
  stdout: string
  stderr: string
}

export function runCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  return runProcess(process.execPath, [CLI, ...args], opts)
}

/** Runs any command to its end (a start-up script, a shell script), collecting what it printed. */
export function runProcess(command: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawnChild(command, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (d: Buffer) => (stdout += d))
    child.stderr!.on('data', (d: Buffer) => (stderr += d))
    const timer = setTimeout(() => void stopChild(child, 'SIGKILL'), opts.timeoutMs ?? PATIENCE_MS)
    child.on('error', reject)
    child.on('close', code => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/** Starts a long-running CLI command; resolves once its output matches `ready`. */
export function startCli(args: string[], ready: RegExp, opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<{ child: ChildProcess; output: () => string }> {
  return new Promise((resolve, reject) => {
    const child = spawnChild(process.execPath, [CLI, ...args], { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    const timer = setTimeout(() => {
      void stopChild(child, 'SIGKILL')
      reject(new Error(`Timed out waiting for ${ready}; output so far:\n${out}`))
    }, opts.timeoutMs ?? PATIENCE_MS)
    const onData = (d: Buffer) => {
      out += d
      if (ready.test(out)) {
        clearTimeout(timer)
        resolve({ child, output: () => out })
      }
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    child.on('close', code => {
      clearTimeout(timer)
      reject(new Error(`Exited with ${code} before ${ready}; output:\n${out}`))
    })
  })
}
