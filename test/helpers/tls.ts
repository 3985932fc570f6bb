import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** A CA and a server certificate it signed (for 127.0.0.1 and localhost), as files. */
export interface TlsFiles {
  /** The CA's certificate, as a file for redis-server and as PEM for `client.socket.ca`. */
  readonly caFile: string;
  readonly ca: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** A CA that signed nothing here: a client that trusts only it refuses the server. */
  readonly otherCa: string;
  /** Remove the files. */
  remove(): Promise<void>;
}

/**
 * Make the files with `openssl` (OPENSSL_BIN or PATH) in a temporary directory. Bounded: each
 * `openssl` run is killed after 20 s.
 */
export async function makeCertificates(): Promise<TlsFiles> {
  const dir = await mkdtemp(join(tmpdir(), 'tracklock-tls-'));
  const remove = () => rm(dir, { recursive: true, force: true });
  const at = (file: string) => join(dir, file);
  const openssl = (...args: string[]) =>
    execFileAsync(process.env.OPENSSL_BIN ?? 'openssl', args, {
      cwd: dir,
      timeout: 20_000,
      killSignal: 'SIGKILL',
    });
  const makeCa = (name: string) =>
    openssl(
      ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`],
      ...['-keyout', at(`${name}.key`), '-out', at(`${name}.crt`)],
    );
  try {
    await Promise.all([makeCa('ca'), makeCa('other-ca')]);
    await openssl(
      ...['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost'],
      ...['-keyout', at('server.key'), '-out', at('server.csr')],
    );
    // Node checks the name it connects to against the subjectAltName: 127.0.0.1 is an IP.
    await writeFile(at('san.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    await openssl(
      ...['x509', '-req', '-in', at('server.csr'), '-days', '2', '-CA', at('ca.crt')],
      ...['-CAkey', at('ca.key'), '-CAcreateserial', '-out', at('server.crt')],
      ...['-extfile', at('san.cnf')],
    );
  } catch (error) {
    await remove();
    throw error;
  }
  return {
    caFile: at('ca.crt'),
    ca: readFileSync(at('ca.crt'), 'utf8'),
    certFile: at('server.crt'),
    keyFile: at('server.key'),
    otherCa: readFileSync(at('other-ca.crt'), 'utf8'),
    remove,
  };
}
