/**
 * Opens a URL in the person's browser when there is one: `$BROWSER` (a command; `%s` stands for
 * the URL, else it is appended), else the desktop's opener. On a machine without a desktop it does
 * nothing, and the caller has printed the URL anyway.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

function opener(url: string): string[] | undefined {
  const browser = process.env['BROWSER']?.trim();
  if (browser) {
    const words = browser.split(/\s+/);
    return words.includes('%s') ? words.map((w) => (w === '%s' ? url : w)) : [...words, url];
  }
  if (process.platform === 'darwin') return ['open', url];
  if (process.platform === 'win32') return ['rundll32', 'url.dll,FileProtocolHandler', url];
  const desktop = process.env['DISPLAY'] || process.env['WAYLAND_DISPLAY'];
  if (desktop && existsSync('/usr/bin/xdg-open')) return ['/usr/bin/xdg-open', url];
  return undefined;
}

/** Starts the browser (detached, output ignored); returns whether one was started. */
export function openBrowser(url: string): boolean {
  const command = opener(url);
  if (!command) return false;
  try {
    // No shell: the URL is one argument, never interpreted.
    const child = spawn(command[0]!, command.slice(1), { detached: true, stdio: 'ignore' });
    child.on('error', () => undefined);
    child.unref();
    return true;
  } catch {
    return false;
  }
}
