/**
 * The result grid: role "grid", virtualised (only the rows in view, plus a margin, are in the
 * DOM), so 100,000 rows scroll as smoothly as 10. Typed: numbers right-aligned, NULL shown as
 * NULL, long values cut with the whole value a click away. A masked column (from a policy) is
 * marked in its header; the field is there for the masking layer to fill.
 */
import { h, mount } from './dom.js';

export interface GridColumn {
  name: string;
  typeId: number;
  /** Set when pgward masked this column's values (shown in the header). */
  masked?: boolean;
}

const ROW_HEIGHT = 26;
const OVERSCAN = 12;
const CELL_CHARS = 200;
/** int2, int4, int8, oid, float4, float8, numeric, money. */
const NUMERIC = new Set([20, 21, 23, 26, 700, 701, 1700, 790]);

export class ResultGrid {
  readonly element: HTMLDivElement;
  private readonly head: HTMLDivElement;
  private readonly viewport: HTMLDivElement;
  private readonly spacer: HTMLDivElement;
  private readonly body: HTMLDivElement;
  private columns: GridColumn[] = [];
  private rows: (string | null)[][] = [];
  private widths: number[] = [];
  private frame = 0;
  /** Called when the view nears the end of the loaded rows (the page fetches more). */
  onNearEnd: (() => void) | undefined;
  /** Called with a cell's whole value when it is opened. */
  onOpenValue: ((column: string, value: string | null) => void) | undefined;

  constructor() {
    this.head = h('div', { class: 'grid-head', role: 'rowgroup' });
    this.spacer = h('div', { class: 'grid-spacer' });
    this.body = h('div', { class: 'grid-body', role: 'rowgroup' });
    this.viewport = h('div', { class: 'grid-viewport' }, this.spacer, this.body);
    this.element = h(
      'div',
      { class: 'grid', role: 'grid', 'aria-label': 'Results', 'aria-rowcount': '0', tabindex: '0' },
      this.head,
      this.viewport,
    );
    this.viewport.addEventListener('scroll', () => this.schedule(), { passive: true });
    this.element.addEventListener('keydown', (e) => this.key(e));
  }

  /** A new result: its columns and first rows. */
  reset(columns: GridColumn[], rows: (string | null)[][]): void {
    this.columns = columns;
    this.rows = [];
    this.widths = columns.map((c) => Math.min(320, Math.max(80, c.name.length * 9 + 24)));
    this.viewport.scrollTop = 0;
    mount(
      this.head,
      h(
        'div',
        { class: 'grid-row', role: 'row', 'aria-rowindex': '1' },
        h('div', { class: 'grid-cell rownum', role: 'columnheader' }, '#'),
        columns.map((c, i) =>
          h(
            'div',
            {
              class: `grid-cell${NUMERIC.has(c.typeId) ? ' num' : ''}${c.masked ? ' masked' : ''}`,
              role: 'columnheader',
              style: `width:${this.widths[i]}px`,
              title: c.masked ? `${c.name} (masked by policy)` : c.name,
            },
            c.name,
          ),
        ),
      ),
    );
    this.append(rows);
  }

  /** More rows of the same result. */
  append(rows: (string | null)[][]): void {
    if (rows.length > 0 && this.rows.length === 0) this.fitWidths(rows);
    for (const row of rows) this.rows.push(row);
    this.element.setAttribute('aria-rowcount', String(this.rows.length + 1));
    this.spacer.style.height = `${this.rows.length * ROW_HEIGHT}px`;
    this.render();
  }

  get rowCount(): number {
    return this.rows.length;
  }

  /** Scrolls so that row `index` (0-based) is in view. */
  scrollToRow(index: number): void {
    this.viewport.scrollTop = index * ROW_HEIGHT;
    this.render();
  }

  private fitWidths(sample: (string | null)[][]): void {
    this.widths = this.widths.map((w, i) => {
      let longest = 0;
      for (const row of sample.slice(0, 100)) longest = Math.max(longest, (row[i] ?? 'NULL').length);
      return Math.min(360, Math.max(w, longest * 8 + 20));
    });
    const cells = this.head.querySelectorAll<HTMLElement>('[role=columnheader]');
    cells.forEach((cell, i) => {
      if (i > 0) cell.style.width = `${this.widths[i - 1]}px`;
    });
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  private render(): void {
    const top = this.viewport.scrollTop;
    const height = this.viewport.clientHeight || 400;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    this.head.scrollLeft = this.viewport.scrollLeft;
    this.body.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    const out: HTMLElement[] = [];
    for (let r = first; r < last; r++) out.push(this.rowElement(r));
    this.body.replaceChildren(...out);
    if (last >= this.rows.length - OVERSCAN * 4) this.onNearEnd?.();
  }

  private rowElement(r: number): HTMLElement {
    const row = this.rows[r]!;
    const el = h(
      'div',
      { class: 'grid-row', role: 'row', 'aria-rowindex': String(r + 2) },
      h('div', { class: 'grid-cell rownum', role: 'rowheader' }, String(r + 1)),
    );
    for (let c = 0; c < this.columns.length; c++) {
      const value = row[c] ?? null;
      const col = this.columns[c]!;
      const cls = `grid-cell${NUMERIC.has(col.typeId) ? ' num' : ''}${value === null ? ' null' : ''}`;
      const shown =
        value === null ? 'NULL' : value.length > CELL_CHARS ? `${value.slice(0, CELL_CHARS)}…` : value;
      const cell = h('div', { class: cls, role: 'gridcell', style: `width:${this.widths[c]}px` }, shown);
      if (value !== null && (value.length > CELL_CHARS || value.includes('\n'))) {
        cell.classList.add('long');
        cell.title = 'Click to see the whole value';
      }
      cell.addEventListener('click', () => this.onOpenValue?.(col.name, value));
      el.append(cell);
    }
    return el;
  }

  private key(e: KeyboardEvent): void {
    const page = Math.max(1, Math.floor(this.viewport.clientHeight / ROW_HEIGHT) - 1) * ROW_HEIGHT;
    const moves: Record<string, number> = {
      ArrowDown: ROW_HEIGHT,
      ArrowUp: -ROW_HEIGHT,
      PageDown: page,
      PageUp: -page,
    };
    if (e.key === 'End') this.viewport.scrollTop = this.viewport.scrollHeight;
    else if (e.key === 'Home') this.viewport.scrollTop = 0;
    else if (moves[e.key] !== undefined) this.viewport.scrollTop += moves[e.key]!;
    else return;
    e.preventDefault();
  }
}
