/** A progress bar on a terminal; nothing in CI or when the output is a pipe or a file. */
import cliProgress from 'cli-progress';
import type { Progress } from './context.js';

export interface Bar extends Progress {
  stop(): void;
}

export function progressBar(total: number): Bar {
  if (!process.stderr.isTTY || process.env.CI) return { step() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      format: 'bench {bar} {value}/{total} | {eta_formatted} left | {label}',
      stream: process.stderr,
      clearOnComplete: true,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { label: 'starting' });
  return {
    step: (label) => bar.increment(1, { label }),
    stop: () => bar.stop(),
  };
}
