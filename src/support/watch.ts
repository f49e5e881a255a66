/**
 * Re-reading operator files without a restart (deny list, authority keys). `fs.watchFile`
 * polls `stat`, which also sees a file replaced by rename (new inode) and works on every
 * file system, where `fs.watch` misses some editors' save strategies.
 */
import { unwatchFile, watchFile, type Stats } from "node:fs";

/** Default polling interval of watched operator files, ms. */
export const DEFAULT_RELOAD_INTERVAL_MS = 1000;

/**
 * Calls `onChange` whenever `path` changes (mtime, size, inode, or appearing/disappearing).
 * The watcher does not keep the process alive. Returns the function that stops it.
 */
export function watchPath(path: string, intervalMs: number, onChange: () => void): () => void {
  const listener = (curr: Stats, prev: Stats) => {
    if (curr.mtimeMs !== prev.mtimeMs || curr.size !== prev.size || curr.ino !== prev.ino) onChange();
  };
  watchFile(path, { interval: intervalMs, persistent: false }, listener);
  return () => unwatchFile(path, listener);
}
