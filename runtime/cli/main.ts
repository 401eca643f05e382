#!/usr/bin/env node
/**
 * The `jetactor` command. It sets how V8 collects this process ({@link disablePretenuring})
 * before it loads the rest of the CLI, so that no allocation site of the runtime is pretenured.
 */
import { disablePretenuring } from '../pretenuring.js';

disablePretenuring();
await import('./cli.js');
