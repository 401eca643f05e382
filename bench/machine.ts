import { execFile } from 'node:child_process';
import { cpus, release, totalmem } from 'node:os';
import { promisify } from 'node:util';
import { findNatsServer } from '../runtime/index.js';

/** The machine a run measured. */
export interface MachineInfo {
  /** Logical CPUs. */
  cores: number;
  /** CPU model as the OS reports it. */
  cpuModel: string;
  /** Total memory in GiB. */
  memoryGiB: number;
  /** Node.js version. */
  node: string;
  /** nats-server version. */
  natsServer: string;
  /** PostgreSQL server version, when reachable. */
  postgres?: string;
  /** OS platform and release. */
  os: string;
  /** Commit of the working tree, when it is a git checkout (`+dirty` with local changes). */
  commit?: string;
}

const run = promisify(execFile);

/** Describes this machine. */
export async function machineInfo(): Promise<MachineInfo> {
  const list = cpus();
  let natsServer = 'not found';
  try {
    const { stdout } = await run(findNatsServer(), ['--version']);
    natsServer = stdout.trim().replace(/^nats-server:\s*/, '');
  } catch {
    // Reported as not found; the scenarios will say so too.
  }
  let commit: string | undefined;
  try {
    const head = (await run('git', ['rev-parse', '--short', 'HEAD'])).stdout.trim();
    const dirty = (await run('git', ['status', '--porcelain'])).stdout.trim() !== '';
    commit = `${head}${dirty ? '+dirty' : ''}`;
  } catch {
    // Not a git checkout.
  }
  return {
    cores: list.length,
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    natsServer,
    os: `${process.platform} ${release()}`,
    ...(commit === undefined ? {} : { commit }),
  };
}
