/**
 * `--config FILE` of the commands that read the daemon's configuration
 * (`serve`, `keystore check`): the loaded file, or null without the option.
 * A file with problems becomes a LocalFailure listing every one of them as
 * FILE:LINE:COL: field: message — the command prints it and exits 1.
 */
import { ConfigFileError, loadConfig, type LoadedConfig } from '../config/load.js';
import { stringOpt, type Parsed } from './args.js';
import { LocalFailure } from './output.js';

export function configOption(p: Parsed): LoadedConfig | null {
  const configPath = stringOpt(p, 'config');
  if (configPath === undefined) return null;
  try {
    return loadConfig(configPath);
  } catch (err) {
    if (err instanceof ConfigFileError) throw new LocalFailure(err.message, { cause: err });
    throw err;
  }
}
