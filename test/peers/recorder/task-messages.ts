// The containerd.task.v2 messages the recording shim answers with (field numbers from
// proto/containerd/runtime/v2/task/shim.proto), hand-encoded like src/shim/messages.ts.
import { Reader, Writer } from 'protobufjs/minimal';

/** containerd.v1.types.Status. */
export enum TaskStatus { Unknown = 0, Created = 1, Running = 2, Stopped = 3 }

export interface Timestamp { seconds: number; nanos: number }

export function now(): Timestamp {
  const ms = Date.now();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

function timestamp(w: Writer, field: number, t: Timestamp | undefined): void {
  if (!t) return;
  w.uint32((field << 3) | 2).fork();
  if (t.seconds) w.uint32(8).int64(t.seconds);
  if (t.nanos) w.uint32(16).int32(t.nanos);
  w.ldelim();
}

/** Fields every task request shares: id=1, exec_id=2; KillRequest adds signal=3. */
export function decodeTaskRequest(buf: Uint8Array): { id: string; execId: string; signal: number } {
  const r = Reader.create(buf);
  const out = { id: '', execId: '', signal: 0 };
  while (r.pos < r.len) {
    const tag = r.uint32();
    const field = tag >>> 3;
    if (field === 1 && (tag & 7) === 2) out.id = r.string();
    else if (field === 2 && (tag & 7) === 2) out.execId = r.string();
    else if (field === 3 && (tag & 7) === 0) out.signal = r.uint32();
    else r.skipType(tag & 7);
  }
  return out;
}

/** CreateTaskResponse / StartResponse {uint32 pid=1}. */
export function encodePid(pid: number): Uint8Array {
  return Writer.create().uint32(8).uint32(pid).finish();
}

/** StateResponse{id=1, bundle=2, pid=3, status=4, exit_status=9, exited_at=10}. */
export function encodeStateResponse(s: { id: string; bundle: string; pid: number; status: TaskStatus; exitStatus: number; exitedAt?: Timestamp }): Uint8Array {
  const w = Writer.create();
  w.uint32(10).string(s.id).uint32(18).string(s.bundle).uint32(24).uint32(s.pid).uint32(32).int32(s.status);
  if (s.exitStatus) w.uint32(72).uint32(s.exitStatus);
  timestamp(w, 10, s.exitedAt);
  return w.finish();
}

/** WaitResponse{exit_status=1, exited_at=2}. */
export function encodeWaitResponse(exitStatus: number, exitedAt: Timestamp): Uint8Array {
  const w = Writer.create();
  if (exitStatus) w.uint32(8).uint32(exitStatus);
  timestamp(w, 2, exitedAt);
  return w.finish();
}

/** DeleteResponse{pid=1, exit_status=2, exited_at=3}: the RPC answer and what `delete` prints. */
export function encodeDeleteResponse(pid: number, exitStatus: number, exitedAt: Timestamp): Uint8Array {
  const w = Writer.create();
  if (pid) w.uint32(8).uint32(pid);
  if (exitStatus) w.uint32(16).uint32(exitStatus);
  timestamp(w, 3, exitedAt);
  return w.finish();
}

/** ConnectResponse{shim_pid=1, task_pid=2, version=3}. */
export function encodeConnectResponse(shimPid: number, taskPid: number, version: string): Uint8Array {
  const w = Writer.create().uint32(8).uint32(shimPid);
  if (taskPid) w.uint32(16).uint32(taskPid);
  return w.uint32(26).string(version).finish();
}

/** PidsResponse{repeated ProcessInfo{pid=1} processes=1}. */
export function encodePidsResponse(pids: number[]): Uint8Array {
  const w = Writer.create();
  for (const p of pids) w.uint32(10).fork().uint32(8).uint32(p).ldelim();
  return w.finish();
}
