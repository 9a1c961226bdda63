/**
 * Spawn the server under test in its own process (the core: `countersign start` as users run it;
 * the baseline: bench/serve.ts) and talk to it through output lines and signals.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../main/core/app.js';

export interface ChildServer {
  port: number;
  pid: number;
  /** Resident set size of the server process, in bytes (from /proc). */
  rss(): number;
  /** CPU time of the server process (all its threads) so far, in seconds: user and system. */
  cpu(): { user: number; system: number };
  /**
   * Scheduler time of the server's event-loop thread and of all its threads so far, in ms
   * (/proc/<pid>/task/<tid>/schedstat): time on a CPU and time runnable but waiting for one. The
   * wait is what a shared machine adds to every answer, whatever the server does.
   */
  sched(): Sched;
  /** Ask the core for its stage timings since the last call (distribution: --stage-timings). */
  timings(): Promise<Record<string, StageTiming>>;
  stop(): Promise<void>;
}

export interface StageTiming {
  ms: number;
  n: number;
  p50Ms?: number;
  p99Ms?: number;
  maxMs?: number;
}

export interface Sched {
  mainRunMs: number;
  mainWaitMs: number;
  allRunMs: number;
  allWaitMs: number;
}

/** /proc/<pid>/task/<tid>/schedstat: run ns, runqueue wait ns, timeslices (missing tasks: thread gone). */
export function schedOf(pid: number): Sched {
  const read = (tid: string) => {
    try {
      const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ').map(Number);
      return { run: (run ?? 0) / 1e6, wait: (wait ?? 0) / 1e6 };
    } catch {
      return { run: 0, wait: 0 };
    }
  };
  const main = read(String(pid));
  let allRunMs = 0;
  let allWaitMs = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const t = read(tid);
    allRunMs += t.run;
    allWaitMs += t.wait;
  }
  return { mainRunMs: main.run, mainWaitMs: main.wait, allRunMs, allWaitMs };
}

export async function startChild(mode: 'core' | 'baseline', arg: string): Promise<ChildServer> {
  const profile = process.env.BENCH_CPU_PROF && mode === 'core' ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  // The core is the product as users run it: `countersign start` through the package's launcher
  // (bin/countersign.mjs, the built dist/server bundle in plain Node), its stage timings read with
  // --stage-timings. The baseline (and the core with the diagnostic BENCH_POLICY_WORKER=0) is
  // bench/serve.ts under node with the tsx loader (not the tsx CLI, which runs the script in a
  // second process: signals and /proc RSS would reach the wrapper).
  const product = mode === 'core' && process.env.BENCH_POLICY_WORKER !== '0';
  const child: ChildProcess = product
    ? spawn(process.execPath, [...profile, join(REPO_ROOT, 'bin', 'countersign.mjs'), 'start', '--data-dir', arg, '--stage-timings'], {
        cwd: REPO_ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
    : spawn(process.execPath, [...profile, '--import', 'tsx', join(REPO_ROOT, 'bench', 'serve.ts'), mode, arg], {
        cwd: REPO_ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
  const lines: string[] = [];
  let buffer = '';
  let wake: (() => void) | undefined;
  child.stdout!.on('data', (d: Buffer) => {
    buffer += d.toString();
    let i: number;
    while ((i = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
      // The core's stdout also carries what `start` prints for people (the desk link): only JSON is ours.
      if (line.startsWith('{')) lines.push(line);
    }
    wake?.();
  });
  // The core says where it listens on stderr (`countersign listening on ws://HOST:PORT ...`);
  // the rest of its log passes through to ours.
  let listening: number | undefined;
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    process.stderr.write(d);
    stderr += d.toString();
    const port = /countersign listening on wss?:\/\/[^\s]+:(\d+) /.exec(stderr);
    if (port && listening === undefined) {
      listening = Number(port[1]);
      stderr = '';
      wake?.();
    } else if (stderr.length > 100_000) stderr = stderr.slice(-10_000);
  });
  // Starting can take minutes on a loaded machine with a large directory (Cedar checks every
  // lookup entity at load); later answers (timings) come at once.
  const nextLine = async (waitMs = 60_000): Promise<string> => {
    const deadline = Date.now() + waitMs;
    while (lines.length === 0) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`bench server (${mode}) did not answer`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 100);
      });
    }
    return lines.shift()!;
  };
  const ready = async (): Promise<number> => {
    if (!product) return (JSON.parse(await nextLine(600_000)) as { port: number }).port;
    const deadline = Date.now() + 600_000;
    while (listening === undefined) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error('bench server (core) did not start');
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 100);
      });
    }
    return listening;
  };
  const port = await ready();
  const pid = child.pid!;
  return {
    port,
    pid,
    rss() {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const kb = /VmRSS:\s+(\d+) kB/.exec(status);
      return kb ? Number(kb[1]) * 1024 : NaN;
    },
    cpu() {
      // /proc/<pid>/stat fields 14 and 15 (utime, stime) in clock ticks; the comm field may hold spaces.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
    },
    sched: () => schedOf(pid),
    async timings() {
      child.kill('SIGUSR2');
      return (JSON.parse(await nextLine()) as { timings: Record<string, StageTiming> }).timings;
    },
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      if (child.exitCode === null && child.signalCode === null) {
        // Killed, and waited for: the next phase opens the same data directory, whose lock a
        // process still being torn down holds (on a loaded machine SIGTERM can take over 5 s).
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}
