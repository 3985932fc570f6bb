/**
 * What a child process records to show that tracklock left nothing running: the active
 * handles beyond those it had at `start()` (its stdio, its IPC channel).
 */
export function handleCheck(): { left(settleMs?: number): Promise<string[]> } {
  const baseline = process.getActiveResourcesInfo();
  return {
    async left(settleMs = 20) {
      // A destroyed socket's handle is freed on the loop's next close phase (0: look now).
      if (settleMs > 0) await new Promise((resolve) => setTimeout(resolve, settleMs));
      const left = process.getActiveResourcesInfo();
      for (const handle of baseline) {
        const at = left.indexOf(handle);
        if (at >= 0) left.splice(at, 1);
      }
      return left;
    },
  };
}
