// Kata's registry directory names: base64 of the exact UTF-8 bytes (Buffer's default) of the volume path, URL-safe
// alphabet, '=' padding kept (Rust URL_SAFE / Go URLEncoding). Node's 'base64url' drops the padding,
// so map the standard alphabet instead.

/** Linux NAME_MAX: longest directory entry name in bytes. */
export const MAX_NAME_BYTES = 255;
/** Longest volume path (bytes) whose encoded name still fits in MAX_NAME_BYTES. */
export const MAX_VOLUME_PATH_BYTES = Math.floor(MAX_NAME_BYTES / 4) * 3;

export function encodeVolumePath(volumePath: string): string {
  return Buffer.from(volumePath).toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
}

/** The volume path a directory name encodes, or undefined unless `name` is exactly Kata's encoding of it. */
export function decodeVolumeDirName(name: string): string | undefined {
  // The empty name would decode to the empty path and back; no volume has that path.
  if (name === '') return undefined;
  const text = Buffer.from(name.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString();
  // Only the exact encoding re-encodes to the same name: that alone refuses other characters, missing
  // padding, invalid UTF-8 and non-canonical trailing bits.
  return encodeVolumePath(text) === name ? text : undefined;
}

/**
 * For a directory name that is not Kata's encoding but decodes to something (padding dropped, the
 * standard '+' alphabet), the volume path it was probably meant for. Used to explain stray entries.
 */
export function decodeLooseDirName(name: string): string | undefined {
  if (!/^[A-Za-z0-9_+-]+={0,2}$/.test(name)) return undefined;
  const bytes = Buffer.from(name.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (bytes.length === 0) return undefined;
  const text = bytes.toString();
  return Buffer.from(text).equals(bytes) ? text : undefined;
}
