/**
 * Whether a host is this machine's loopback: a socket address (`127.0.0.1`, `::1`,
 * `::ffff:127.0.0.1`), a URL hostname (`[::1]`) or `localhost`. The one test for every place that
 * relaxes a rule on loopback (plaintext passwords, Secure cookies, certificate checks).
 */
export function isLoopbackHost(host: string | undefined): boolean {
  const h = (host ?? '').replace(/^\[(.*)\]$/, '$1');
  return h === 'localhost' || h === '::1' || /^(::ffff:)?127\./.test(h);
}
