/** Reading zip files the server wrote (a folder downloaded from a pxar archive), with yauzl. */
import yauzl from 'yauzl';

export interface ZipMember {
  data: Buffer;
  /** The Unix mode from the external attributes (type and permission bits). */
  mode: number;
}

/** Every member of the zip in `buf` by name (folders end in `/`, with empty data). */
export function unzip(buf: Buffer): Promise<Map<string, ZipMember>> {
  return new Promise((resolve, reject) => {
    yauzl.fromBuffer(buf, { lazyEntries: true }, (err, zip) => {
      if (err) return reject(err);
      const out = new Map<string, ZipMember>();
      zip.on('entry', (e: yauzl.Entry) => {
        const mode = (e.externalFileAttributes >>> 16) & 0xffff;
        if (e.fileName.endsWith('/')) {
          out.set(e.fileName, { data: Buffer.alloc(0), mode });
          return zip.readEntry();
        }
        zip.openReadStream(e, (err2, s) => {
          if (err2) return reject(err2);
          const parts: Buffer[] = [];
          s.on('data', (d: Buffer) => parts.push(d));
          s.on('end', () => {
            out.set(e.fileName, { data: Buffer.concat(parts), mode });
            zip.readEntry();
          });
        });
      });
      zip.on('end', () => resolve(out));
      zip.on('error', reject);
      zip.readEntry();
    });
  });
}
