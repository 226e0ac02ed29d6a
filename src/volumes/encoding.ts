// Kata's registry directory names: base64 of the exact UTF-8 bytes of the volume path, URL-safe
// alphabet, '=' padding kept (Rust URL_SAFE / Go URLEncoding). Node's 'base64url' drops the padding,
// so map the standard alphabet instead.

/** Linux NAME_MAX: longest directory entry name in bytes. */
export const MAX_NAME_BYTES = 255;
/** Longest volume path (bytes) whose encoded name still fits in MAX_NAME_BYTES. */
export const MAX_VOLUME_PATH_BYTES = Math.floor(MAX_NAME_BYTES / 4) * 3;

export function encodeVolumePath(volumePath: string): string {
  return Buffer.from(volumePath, 'utf8').toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
}

/** The volume path a directory name encodes, or undefined unless `name` is exactly Kata's encoding of it. */
export function decodeVolumeDirName(name: string): string | undefined {
  if (name.length === 0 || name.length % 4 !== 0 || !/^[A-Za-z0-9_-]+={0,2}$/.test(name)) return undefined;
  const bytes = Buffer.from(name.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  const text = bytes.toString('utf8');
  // Invalid UTF-8 or non-canonical trailing bits would not re-encode to the same name.
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
  const text = bytes.toString('utf8');
  return Buffer.from(text, 'utf8').equals(bytes) ? text : undefined;
}
