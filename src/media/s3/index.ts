// Object storage as a medium: s3://BUCKET/PREFIX/NAME on AWS S3 or any S3-compatible
// store (Ceph's radosgw, MinIO), through the official AWS SDK. A dump streams into a
// multipart upload completed only after its last byte; restore and verify read with
// ranged GETs in flight, in order. See s3-target.ts and s3-source.ts; s3-place.ts for
// which store (endpoint, addressing) and what the catalog records of it.
export * from './s3-url.js';
export * from './s3-client.js';
export * from './s3-place.js';
export * from './s3-target.js';
export * from './s3-abandoned-uploads.js';
export * from './s3-source.js';
