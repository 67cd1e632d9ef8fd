/** HTML escaping, shared by every page pgward renders (the login pages, the dev IdP's pages). */

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Escapes text for HTML element content and quoted attributes. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** A small self-contained page of the gateway (no outside resources). */
export function gatewayPage(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)} · pgward</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;background:#f4f5f7;display:flex;justify-content:center;padding-top:10vh}
main{background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002;width:22rem}
a.provider,button{display:block;margin-top:1rem;padding:.6rem;background:#2457d6;color:#fff;border:0;
border-radius:4px;text-align:center;text-decoration:none;width:100%;font-size:1rem}
.error{color:#b00020}.hint{color:#555;font-size:.85rem}
</style></head>
<body><main><h1>${escapeHtml(title)}</h1>
${body}
</main></body></html>
`;
}
