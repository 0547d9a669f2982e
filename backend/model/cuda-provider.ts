import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

/**
 * Where onnxruntime-node keeps its native libraries, and whether its CUDA provider is among
 * them. The npm install leaves it out unless ONNXRUNTIME_NODE_INSTALL=cuda12; asking
 * onnxruntime for CUDA without it makes the library print a red loader error on stderr before
 * it fails, so DEVICE=auto looks first and says it in one line.
 */
export function missingCudaProvider(): string | null {
  if (process.platform !== 'linux' && process.platform !== 'win32')
    return `no CUDA build of onnxruntime-node for ${process.platform}`
  let folder: string
  try {
    folder = join(
      dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json')),
      'bin',
      'napi-v6',
      process.platform,
      process.arch,
    )
  } catch {
    return null
  }
  const file = process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so'
  return existsSync(join(folder, file))
    ? null
    : `onnxruntime-node was installed without its CUDA provider (no ${file} in ${folder}; install with ONNXRUNTIME_NODE_INSTALL=cuda12)`
}
