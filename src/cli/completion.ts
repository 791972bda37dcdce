/**
 * `cryptod completion bash|zsh`: a shell completion script for commands,
 * subcommands and flags.
 *
 * The flags are read from each command's own --help text, so a flag that is
 * documented is completed and nothing else is: completion cannot drift from
 * the help (test/cli-completion.test.ts runs the script in bash).
 *
 *   eval "$(cryptod completion bash)"        # ~/.bashrc
 *   eval "$(cryptod completion zsh)"         # ~/.zshrc (through bashcompinit)
 */
import { UsageError } from './args.js';
import { CLIENT_HELP, CLIENT_SUBCOMMANDS } from './client.js';
import { DATA_COMMANDS, dataCommandHelp } from './data.js';
import { DATAKEY_HELP } from './datakey.js';
import { DIGEST_HELP } from './digest.js';
import { KEY_HELP, KEY_SUBCOMMANDS } from './key.js';
import { KEYSTORE_HELP } from './keystore.js';
import { EXIT_OK } from './output.js';
import { RELOAD_HELP } from './reload.js';
import { SERVE_HELP } from './serve.js';
import { STATUS_HELP } from './status.js';

export const COMPLETION_HELP = `Usage: cryptod completion bash|zsh

Print a shell completion script for cryptod's commands, subcommands and
flags (file names where a file goes). Load it from your shell's start-up file:

  bash:  eval "$(cryptod completion bash)"     (in ~/.bashrc)
  zsh:   eval "$(cryptod completion zsh)"      (in ~/.zshrc)
`;

const SHELLS = ['bash', 'zsh'] as const;

interface CommandCompletion {
  readonly subcommands: readonly string[];
  readonly flags: readonly string[];
}

/** What is completed after each command. */
export function completionTable(): ReadonlyMap<string, CommandCompletion> {
  const flagsOf = (help: string): string[] => [...new Set(help.match(/--[a-z][a-z0-9-]*/g) ?? [])].sort();
  const t = new Map<string, CommandCompletion>([
    ['serve', { subcommands: [], flags: flagsOf(SERVE_HELP) }],
    ['digest', { subcommands: [], flags: flagsOf(DIGEST_HELP) }],
    ['status', { subcommands: [], flags: flagsOf(STATUS_HELP) }],
    ['client', { subcommands: [...CLIENT_SUBCOMMANDS], flags: flagsOf(CLIENT_HELP) }],
    ['key', { subcommands: [...KEY_SUBCOMMANDS], flags: flagsOf(KEY_HELP) }],
    ['keystore', { subcommands: ['check'], flags: flagsOf(KEYSTORE_HELP) }],
    ['reload', { subcommands: [], flags: flagsOf(RELOAD_HELP) }],
    ['datakey', { subcommands: ['generate', 'rewrap'], flags: flagsOf(DATAKEY_HELP) }],
    ['completion', { subcommands: [...SHELLS], flags: ['--help'] }],
  ]);
  for (const n of DATA_COMMANDS) t.set(n, { subcommands: [], flags: flagsOf(dataCommandHelp(n)) });
  t.set('help', { subcommands: [...t.keys()], flags: [] });
  return t;
}

/** The bash script: `_cryptod` completes from COMP_WORDS / COMP_CWORD. */
export function bashCompletion(): string {
  const t = completionTable();
  const cases = [...t].map(([cmd, c]) =>
    `    ${shellWord(cmd)}) subs=${quote(c.subcommands.join(' '))}; flags=${quote(c.flags.join(' '))} ;;`).join('\n');
  return `# cryptod completion for bash (cryptod completion bash)
_cryptod() {
  local cur=\${COMP_WORDS[COMP_CWORD]} cmd=\${COMP_WORDS[1]} subs='' flags=''
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=( $(compgen -W ${quote([...t.keys(), '--help', '--version'].join(' '))} -- "$cur") )
    return 0
  fi
  case "$cmd" in
${cases}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=( $(compgen -W "$flags" -- "$cur") )
  elif [ "$COMP_CWORD" -eq 2 ] && [ -n "$subs" ]; then
    COMPREPLY=( $(compgen -W "$subs" -- "$cur") )
  else
    COMPREPLY=( $(compgen -f -- "$cur") )
  fi
  return 0
}
complete -F _cryptod cryptod
`;
}

/** zsh runs the bash function through bashcompinit (shipped with zsh). */
export function zshCompletion(): string {
  return `# cryptod completion for zsh (cryptod completion zsh)
autoload -U +X compinit && compinit
autoload -U +X bashcompinit && bashcompinit
${bashCompletion().split('\n').slice(1).join('\n')}`;
}

export async function completion(argv: readonly string[]): Promise<number> {
  const [shell, ...rest] = argv;
  if (shell === '--help' || shell === '-h') {
    process.stdout.write(COMPLETION_HELP);
    return EXIT_OK;
  }
  if (shell === undefined || !(SHELLS as readonly string[]).includes(shell)) {
    throw new UsageError(`\`cryptod completion\` needs a shell: ${SHELLS.join(' or ')}${shell === undefined ? '' : `, got '${shell}'`}`, 'completion');
  }
  if (rest.length > 0) throw new UsageError(`\`cryptod completion\` takes one argument, got an extra '${rest[0]!}'`, 'completion');
  process.stdout.write(shell === 'bash' ? bashCompletion() : zshCompletion());
  return EXIT_OK;
}

/** Single-quoted for the shell (the words are flags and names: no quotes inside, but be safe). */
function quote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function shellWord(s: string): string {
  if (!/^[a-z][a-z0-9-]*$/.test(s)) throw new Error(`not a command name: ${s}`);
  return s;
}
