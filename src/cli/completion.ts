/**
 * `pgward completion bash|zsh|fish`: shell completion for commands, flags and their choices, and
 * connection names, made from the command tree itself so that it cannot fall behind main.ts.
 * Connection names come from `pgward __connections` at completion time (the caller's own list;
 * nothing when not signed in or the gateway is away).
 */
import type { Command, Option } from 'commander';
import { PgwardError } from '../errors.js';
import { myConnections } from './client_env.js';
import { accessToken, gatewayUrl } from './gateway_client.js';

/** A connection name, as the API allows them (src/api/admin_routes.ts). */
const CONNECTION_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

export const COMPLETION_SHELLS = ['bash', 'zsh', 'fish'] as const;
export type CompletionShell = (typeof COMPLETION_SHELLS)[number];

/** One command of the tree: its path from the root ("" for pgward itself), subcommands and flags. */
interface Node {
  path: string;
  description: string;
  subcommands: string[];
  options: readonly Option[];
  /** Its first argument is a connection name. */
  takesConnection: boolean;
  /** Values of its first argument, when they are a fixed set. */
  argumentChoices: readonly string[];
}

const visible = (c: Command) => !(c as unknown as { _hidden?: boolean })._hidden;

function nodes(root: Command): Node[] {
  const out: Node[] = [];
  const walk = (cmd: Command, path: string) => {
    const subs = cmd.commands.filter(visible);
    const first = cmd.registeredArguments[0];
    out.push({
      path,
      description: cmd.description(),
      subcommands: subs.flatMap((s) => [s.name(), ...s.aliases()]),
      options: cmd.options.filter((o) => !o.hidden),
      takesConnection: first?.name() === 'connection',
      argumentChoices: first?.argChoices ?? [],
    });
    for (const s of subs) walk(s, path ? `${path} ${s.name()}` : s.name());
    // An alias completes what its command completes.
    for (const s of subs) for (const a of s.aliases()) walk(s, path ? `${path} ${a}` : a);
  };
  walk(root, '');
  return out;
}

const flagsOf = (o: Option) => [o.long, o.short].filter((f): f is string => Boolean(f));
const takesValue = (o: Option) => o.required || o.optional;
const words = (list: readonly string[]) => list.join(' ');

/** bash (and zsh through bashcompinit): a case table per command path, and one function. */
function bash(tree: Node[]): string {
  const valueFlags = new Set(tree.flatMap((n) => n.options.filter(takesValue).flatMap(flagsOf)));
  const choices = new Map<string, readonly string[]>();
  for (const n of tree)
    for (const o of n.options) if (o.argChoices) for (const f of flagsOf(o)) choices.set(f, o.argChoices);
  const cases = (pick: (n: Node) => string) =>
    tree
      .map((n) => [n.path, pick(n)] as const)
      .filter(([, v]) => v !== '')
      .map(([p, v]) => `    '${p}') echo '${v}' ;;`)
      .join('\n');
  return `# pgward completion for bash. Load with: source <(pgward completion bash)
_pgward_subcommands() {
  case "$1" in
${cases((n) => words(n.subcommands))}
  esac
}
_pgward_flags() {
  case "$1" in
${cases((n) => words([...n.options.flatMap(flagsOf), '--help']))}
  esac
}
_pgward_arguments() {
  case "$1" in
${cases((n) => words(n.argumentChoices))}
  esac
}
_pgward_choices() {
  case "$1" in
${[...choices].map(([f, v]) => `    '${f}') echo '${words(v)}' ;;`).join('\n')}
  esac
}
_pgward_value_flags=' ${words([...valueFlags])} '
_pgward_connection_commands=' ${words(tree.filter((n) => n.takesConnection).map((n) => n.path.replaceAll(' ', '_')))} '
_pgward() {
  [[ -n \${ZSH_VERSION-} ]] && setopt localoptions ksharrays
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="" cmd="" w i positional=0 subs
  (( COMP_CWORD > 0 )) && prev="\${COMP_WORDS[COMP_CWORD-1]}"
  COMPREPLY=()
  for (( i = 1; i < COMP_CWORD; i++ )); do
    w="\${COMP_WORDS[i]}"
    # After --, the words are the client's own.
    [[ $w == -- ]] && return 0
    if [[ $w == -* ]]; then
      [[ $_pgward_value_flags == *" $w "* ]] && i=$((i + 1))
      continue
    fi
    subs=" $(_pgward_subcommands "$cmd") "
    if (( positional == 0 )) && [[ $subs == *" $w "* ]]; then
      cmd="\${cmd:+$cmd }$w"
    else
      positional=$((positional + 1))
    fi
  done
  if [[ $_pgward_value_flags == *" $prev "* ]]; then
    COMPREPLY=($(compgen -W "$(_pgward_choices "$prev")" -- "$cur"))
    return 0
  fi
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(_pgward_flags "$cmd")" -- "$cur"))
    return 0
  fi
  (( positional == 0 )) || return 0
  subs="$(_pgward_subcommands "$cmd")"
  if [[ -n $subs ]]; then
    COMPREPLY=($(compgen -W "$subs" -- "$cur"))
  elif [[ $_pgward_connection_commands == *" \${cmd// /_} "* ]]; then
    COMPREPLY=($(compgen -W "$(command pgward __connections 2>/dev/null)" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$(_pgward_arguments "$cmd")" -- "$cur"))
  fi
}
complete -o default -F _pgward pgward
`;
}

/** zsh: the bash function through zsh's bashcompinit. */
function zsh(tree: Node[]): string {
  return `#compdef pgward
# pgward completion for zsh. Load with: source <(pgward completion zsh)
autoload -U +X compinit && { (( $+functions[compdef] )) || compinit }
autoload -U +X bashcompinit && bashcompinit
${bash(tree).split('\n').slice(1).join('\n')}`;
}

const fishQuote = (s: string) => `'${s.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;

/** fish: one `complete` line per subcommand and flag, conditioned on the words seen. */
function fish(tree: Node[]): string {
  const lines = [
    '# pgward completion for fish. Load with: pgward completion fish | source',
    'complete -c pgward -f',
    'function __pgward_path',
    '    set -l path',
    '    for w in (commandline -opc)[2..-1]',
    "        string match -q -- '-*' $w; and continue",
    '        set -a path $w',
    '    end',
    '    string join _ -- $path',
    'end',
    'function __pgward_at',
    '    set -l path (__pgward_path)',
    '    test "$path" = "$argv[1]"',
    'end',
  ];
  for (const n of tree) {
    const at = `__pgward_at ${fishQuote(n.path.replaceAll(' ', '_'))}`;
    const parent = tree.find((p) => p.path === n.path.split(' ').slice(0, -1).join(' ') && n.path !== '');
    if (parent) {
      const name = n.path.split(' ').at(-1)!;
      const atParent = `__pgward_at ${fishQuote(parent.path.replaceAll(' ', '_'))}`;
      lines.push(
        `complete -c pgward -n ${fishQuote(atParent)} -a ${name} -d ${fishQuote(n.description.slice(0, 80))}`,
      );
    }
    // A command's flags, also once its arguments are given (the path then goes on past it).
    const here =
      n.path === ''
        ? ''
        : `-n ${fishQuote(`string match -qr -- ${fishQuote(`^${n.path.replaceAll(' ', '_')}(_|$)`)} (__pgward_path)`)} `;
    for (const o of n.options) {
      const flag = [o.long ? `-l ${o.long.slice(2)}` : '', o.short ? `-s ${o.short.slice(1)}` : '']
        .filter(Boolean)
        .join(' ');
      const value = o.argChoices ? ` -x -a ${fishQuote(words(o.argChoices))}` : takesValue(o) ? ' -r -F' : '';
      lines.push(`complete -c pgward ${here}${flag}${value} -d ${fishQuote(o.description.slice(0, 80))}`);
    }
    if (n.takesConnection) {
      lines.push(`complete -c pgward -n ${fishQuote(at)} -a '(pgward __connections 2>/dev/null)'`);
    }
    if (n.argumentChoices.length > 0) {
      lines.push(`complete -c pgward -n ${fishQuote(at)} -a ${fishQuote(words(n.argumentChoices))}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** `pgward completion SHELL`: prints the script. */
export function runCompletion(shell: string, program: Command): void {
  const make = { bash, zsh, fish }[shell as CompletionShell];
  if (!make) {
    throw new PgwardError('BAD_REQUEST', `completion ${shell}: expected bash, zsh or fish`);
  }
  process.stdout.write(make(nodes(program)));
}

/** `pgward __connections`: the caller's connection names, one a line; silent on any failure. */
export async function runConnectionNames(opts: { gateway?: string }): Promise<void> {
  try {
    const gateway = await gatewayUrl(opts.gateway);
    const mine = await myConnections(gateway, await accessToken(gateway));
    // bash's compgen -W expands what it is given ($(...) included): only a name as the API
    // spells connection names gets through, whatever a gateway answers.
    const names = mine.map((c) => c.name).filter((n) => CONNECTION_NAME.test(n));
    process.stdout.write(names.map((n) => `${n}\n`).join(''));
  } catch {
    // Completion must never print errors into the person's command line.
  }
}
