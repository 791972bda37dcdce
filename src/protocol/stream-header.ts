/**
 * The fixed layout of the AEAD stream header (docs/formats.md "AEAD stream
 * format"), which both the daemon's sealer and opener
 * (src/ops/stream-format.ts) and the client's stream, sizing its pieces
 * from the header, read.
 *
 *   "CDAS" │ version │ alg │ segment size (u32 BE) │ salt (32) │ nonce prefix (7)
 *   0        4         5     6                       10          42            49
 */
export const STREAM_MAGIC = Buffer.from('CDAS', 'latin1');
export const STREAM_VERSION = 1;
export const STREAM_HEADER_LENGTH = 49;
export const STREAM_SALT_LENGTH = 32;
export const STREAM_PREFIX_LENGTH = 7;
export const STREAM_TAG_LENGTH = 16;
/** Offset of the u32 segment size in the header. */
export const STREAM_SEGMENT_SIZE_OFFSET = 6;
/** Plaintext bytes per segment: the range an encrypting stream accepts, and its default. */
export const MIN_SEGMENT_SIZE = 1024;
export const MAX_SEGMENT_SIZE = 1024 * 1024;
export const DEFAULT_SEGMENT_SIZE = 64 * 1024;
