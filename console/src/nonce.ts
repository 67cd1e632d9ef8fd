/** The page's style nonce (CSP): CodeMirror's style elements carry it. */
export const styleNonce =
  document.querySelector<HTMLMetaElement>('meta[name="pgward-style-nonce"]')?.content ?? '';
