// What the three programs share around their work: arguments, usage text and one-line errors.

import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { ModelError } from './contract.mjs';
import { ImageError, firstLine } from './pixels.mjs';

/** A shipped model's path: weights/NAME next to this folder's project root. */
export function shipped(name) {
  return fileURLToPath(new URL(`../../../weights/${name}`, import.meta.url));
}

/** A request the program cannot serve (bad arguments or inputs): one line, exit status 2. */
export class UsageError extends Error {}

/**
 * Parse process.argv for a program taking `positionals` (their names, for messages) and the
 * given options (util.parseArgs's format; --help and --threads are added). Prints `usage` and
 * exits 0 on --help.
 */
export function parseCommandLine(usage, positionals, options) {
  let parsed;
  try {
    parsed = parseArgs({
      args: process.argv.slice(2),
      allowPositionals: true,
      options: {
        ...options,
        threads: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError(firstLine(error).replace(/\. To specify .*$/, ''));
  }
  if (parsed.values.help) {
    process.stdout.write(usage);
    process.exit(0);
  }
  if (parsed.positionals.length !== positionals.length) {
    throw new UsageError(
      `expected ${positionals.length} argument(s) (${positionals.join(' ')}), got ${parsed.positionals.length}`,
    );
  }
  const values = { ...parsed.values };
  if (values.threads !== undefined) values.threads = positiveInteger(values.threads, '--threads', 1024);
  return { values, positionals: parsed.positionals };
}

/** A whole number 1..maximum given on the command line, or a UsageError. */
export function positiveInteger(text, option, maximum) {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > maximum) {
    throw new UsageError(`${option} must be a whole number from 1 to ${maximum}, got '${text}'`);
  }
  return Number(text);
}

/**
 * Run `main`, turning the errors a user can act on into one line on stderr and a non-zero exit:
 * 2 for a bad command line (with a pointer to --help), 1 for an input or model that cannot be
 * used. Anything else is a bug and keeps its stack trace.
 */
export async function runMain(program, main) {
  try {
    await main();
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`${program}: ${error.message} (see --help)\n`);
      process.exitCode = 2;
    } else if (error instanceof ModelError || error instanceof ImageError) {
      process.stderr.write(`${program}: ${firstLine(error)}\n`);
      process.exitCode = 1;
    } else {
      throw error;
    }
  }
}
