/**
 * HELLO: the first request on every connection (docs/protocol.md §4).
 * It fixes the protocol version and names the client. The ClientId joins the
 * kernel-verified peer identity (when the platform gives one) with the name
 * the client chose, so two processes of one user that pick the same name
 * share a namespace of handles, and nobody else does.
 */
import type { CborValue } from '../protocol/cbor.js';
import { InvalidArgumentError, ProtocolVersionError } from '../protocol/errors.js';
import { PROTOCOL_VERSION } from '../protocol/ops.js';
import { clientId, type ClientId } from '../state/ids.js';
import { asArgs, int, optStr } from '../ops/args.js';
import type { Limits } from './limits.js';
import { DAEMON_VERSION } from './version.js';

export interface PeerIdentity {
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
}

export interface Identity {
  readonly clientId: ClientId;
  readonly clientName: string;
  readonly peer: PeerIdentity | null;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function handshake(raw: CborValue, peer: PeerIdentity | null, limits: Limits): { identity: Identity; reply: CborValue } {
  const args = asArgs(raw, 'the HELLO arguments');
  const version = int(args, 'version', 0, 0xffff);
  if (version !== PROTOCOL_VERSION) {
    throw new ProtocolVersionError(`protocol version ${version} is not supported; this daemon speaks version ${PROTOCOL_VERSION}`, {
      detail: { supported: PROTOCOL_VERSION, requested: version },
    });
  }
  const name = optStr(args, 'client') ?? 'anonymous';
  if (!NAME.test(name)) {
    throw new InvalidArgumentError("expected 'client' to be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit", {
      detail: { field: 'client' },
    });
  }
  const id = clientId(peer === null ? `local/${name}` : `uid:${peer.uid}/${name}`);
  const identity: Identity = { clientId: id, clientName: name, peer };
  const reply: CborValue = {
    version: PROTOCOL_VERSION,
    daemon: 'cryptod',
    daemonVersion: DAEMON_VERSION,
    clientId: id,
    limits: {
      maxFrame: limits.maxFrame,
      maxNodesPerClient: limits.maxNodesPerClient,
      maxInflightPerConnection: limits.maxInflightPerConnection,
    },
  };
  return { identity, reply };
}
