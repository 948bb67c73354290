import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestnetError } from './errors.js';

/** Absolute paths of the pinned binaries a testnet runs. */
export interface ToolPaths {
  /** The control server. */
  headscale: string;
  /** The native Tailscale daemon used for independent peers. */
  tailscaled: string;
  /** The CLI that talks to a tailscaled over its unix socket. */
  tailscale: string;
}

// src/tools.ts and dist/tools.js both sit three levels below the repo root.
const repoToolsBin = fileURLToPath(new URL('../../../.tools/bin', import.meta.url));

/**
 * Finds headscale, tailscaled and tailscale in `binDir`, else in `$KRKN_TOOLS_BIN`, else in the
 * repo's `.tools/bin` (where `bash scripts/tools.sh` installs the pinned versions).
 * We never fall back to `$PATH`: an unpinned headscale or tailscaled would make failures unreproducible.
 */
export function findTools(binDir?: string): ToolPaths {
  const dir = binDir ?? process.env.KRKN_TOOLS_BIN ?? repoToolsBin;
  const paths: ToolPaths = {
    headscale: join(dir, 'headscale'),
    tailscaled: join(dir, 'tailscaled'),
    tailscale: join(dir, 'tailscale'),
  };
  for (const path of Object.values(paths) as string[]) {
    try {
      accessSync(path, constants.X_OK);
    } catch {
      throw new TestnetError('TOOL_NOT_FOUND', `${path} is missing or not executable; run \`bash scripts/tools.sh\``);
    }
  }
  return paths;
}
