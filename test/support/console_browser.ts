/** Real Chromium (Debian's) driven by playwright-core, for the console's end-to-end tests. */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { tempDir } from './temp_dir.js';

export const CHROMIUM = '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true });
}

/** Where screenshots go (kept after the run: they are the test's artefacts). */
export function screenshotDir(): string {
  const dir = process.env['PGWARD_SCREENSHOTS'] ?? tempDir('console-shots');
  mkdirSync(dir, { recursive: true });
  return dir;
}

export async function shot(page: Page, dir: string, name: string): Promise<string> {
  const file = path.join(dir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  return file;
}

/**
 * Signs in as a person would: the console sends the browser to the sign-in page, the provider's
 * button leads to the dev IdP's pages (email, password), and back to the console.
 */
export async function signIn(context: BrowserContext, http: string, email: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${http}/`);
  await page.waitForURL(/\/login$/);
  await signInHere(page, http, email);
  return page;
}

/** From the gateway's sign-in page on, through the IdP's pages, back to the console. */
export async function signInHere(page: Page, http: string, email: string): Promise<void> {
  await page.getByRole('link', { name: /Sign in with/ }).click();
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill('password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  // The dev IdP consents on the person's behalf; its callback lands on /login/done, then here.
  await page.waitForURL(`${http}/`, { timeout: 15_000 });
  await page.getByLabel('Connection').waitFor();
}
