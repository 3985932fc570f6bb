import { createInterface } from 'node:readline/promises';

/**
 * Ask `question` on the terminal and resolve whether the answer was yes. Only called when
 * stdin is a terminal; the prompt goes to stderr so that stdout stays the command's output.
 */
export async function confirm(question: string): Promise<boolean> {
  const terminal = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await terminal.question(question)).trim());
  } finally {
    terminal.close();
  }
}
