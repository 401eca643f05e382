import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { DomainDefinition } from '../domain/define-domain.js';
import { ConfigError, describeError } from '../errors.js';

/** Domains shipped with jetactor, loadable by name. */
const bundled: Record<string, URL> = {
  flight: new URL('../../domains/flight/index.js', import.meta.url),
  bank: new URL('../../domains/bank/index.js', import.meta.url),
};

/**
 * Loads domain modules: each argument is a path to a module (or the name of a bundled domain:
 * `flight`, `bank`); every export made with `defineDomain` is hosted.
 */
export async function loadDomains(specs: readonly string[]): Promise<DomainDefinition[]> {
  const found = new Map<string, DomainDefinition>();
  for (const spec of specs) {
    const url = bundled[spec] ?? locate(spec);
    let module: Record<string, unknown>;
    try {
      module = (await import(url.href)) as Record<string, unknown>;
    } catch (error) {
      throw new ConfigError(
        `Cannot load domain module ${JSON.stringify(spec)}: ${describeError(error)}. Pass a built .js module (run npm run build) or one of: ${Object.keys(bundled).join(', ')}.`,
        { cause: error },
      );
    }
    const domains = Object.values(module).filter(
      (value): value is DomainDefinition => (value as DomainDefinition | null)?.kind === 'domain',
    );
    if (domains.length === 0) {
      throw new ConfigError(
        `Module ${JSON.stringify(spec)} exports no domain; export one made with defineDomain({ name, aggregates }).`,
      );
    }
    for (const domain of domains) found.set(domain.name, domain);
  }
  return [...found.values()];
}

function locate(spec: string): URL {
  const path = resolve(spec);
  if (!existsSync(path)) {
    throw new ConfigError(
      `Domain module ${JSON.stringify(spec)} not found (looked at ${path}); pass a path to a .js module or one of: ${Object.keys(bundled).join(', ')}.`,
    );
  }
  return pathToFileURL(path);
}
