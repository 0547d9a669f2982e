import { watch } from 'node:fs'
import { basename, dirname } from 'node:path'

/**
 * Calls `onChange` when the config file changes (the folder is watched, so editors that
 * replace the file by renaming are seen too) or on SIGHUP. Changes are debounced: an editor's
 * several writes make one reload.
 */
export function watchConfigFile(path: string | undefined, onChange: (reason: 'file' | 'SIGHUP') => void): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined
  const soon = () => {
    clearTimeout(timer)
    timer = setTimeout(() => onChange('file'), 200)
  }
  const onSignal = () => onChange('SIGHUP')
  process.on('SIGHUP', onSignal)
  const watcher = path ? watch(dirname(path), (_event, name) => name === basename(path) && soon()) : undefined
  watcher?.unref()
  return () => {
    clearTimeout(timer)
    watcher?.close()
    process.off('SIGHUP', onSignal)
  }
}
