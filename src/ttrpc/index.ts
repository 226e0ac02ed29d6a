// Public API of the TTRPC library (no dependency outside Node built-ins). See README.md.
export { MESSAGE_LENGTH_MAX, HEADER_LENGTH, CUT_THROUGH_MIN, CUT_THROUGH_PREFIX, FrameType, Flags, encodeFrame, FrameParser } from './frame';
export type { Frame, FrameParserOptions, FrameHead, FrameSink } from './frame';
export { decodeRequest, encodeRequest, peekServiceMethod, peekCallName, decodeResponse, encodeResponse, decodeStatus, encodeStatus } from './wire';
export type { KeyValue, Request, Any, Status, Response } from './wire';
export { Code, TtrpcError, codeName, toStatus, oversizeError, closedError } from './errors';
export { Channel } from './channel';
export type { ChannelOptions, ChannelEvents, RawFrameWriter } from './channel';
export { Server } from './server';
export type { ServerOptions, ShutdownOptions } from './server';
export type { CallContext, UnaryHandler, StreamHandler, ServerStream, StreamKind } from './handlers';
export { Client } from './client';
export type { ClientOptions, CallOptions, Disposable } from './client';
export { ClientStream } from './client-stream';
export type { ClientStreamOptions } from './client-stream';
