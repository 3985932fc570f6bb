/**
 * A line of tracklock's own on stderr, prefixed so that it stands apart from the command's
 * output, which shares the terminal.
 */
export function say(message: string): void {
  process.stderr.write(`tracklock: ${message}\n`);
}
