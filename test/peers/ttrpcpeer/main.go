// ttrpcpeer: a test peer built on Debian's containerd/ttrpc 1.1.1 (the version containerd 1.6 uses),
// so katavol's TypeScript TTRPC library can be checked against the real Go implementation.
//
// Usage:
//
//	ttrpcpeer server SOCK
//	ttrpcpeer bench-server SOCK
//	ttrpcpeer client [-parallel] [-then SERVICE/METHOD:PAYLOAD]... SOCK SERVICE METHOD PAYLOAD [timeout_ms] [k=v ...]
//	ttrpcpeer bench-client SOCK SIZE SECONDS CONCURRENCY
//
// Servers serve service katavol.test.Echo and print "ready" once listening (server also prints
// "sleeping MS" when a Sleep call starts); SIGTERM/SIGINT stops them
// (the listener and its socket file are removed). PAYLOAD is hex, or @FILE for a file's raw bytes (argv
// cannot hold a 4 MiB payload). The client prints one line per call: the reply as hex, or
// "error code=N msg=MESSAGE"; with several calls each line starts with "#I " (I = call index, 0 = the
// main call) and lines come in completion order. Exit status: 0 all calls succeeded, 3 a call failed,
// 1 setup error, 2 usage.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/ioutil"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const serviceName = "katavol.test.Echo"

// Raw is a gogo-compatible message whose encoding is its bytes, so payloads pass through untouched.
type Raw struct{ B []byte }

func (r *Raw) Reset()                   { r.B = nil }
func (r *Raw) String() string           { return hex.EncodeToString(r.B) }
func (r *Raw) ProtoMessage()            {}
func (r *Raw) Marshal() ([]byte, error) { return r.B, nil }
func (r *Raw) Unmarshal(b []byte) error { r.B = append([]byte(nil), b...); return nil }

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  ttrpcpeer server SOCK
  ttrpcpeer bench-server SOCK
  ttrpcpeer client [-parallel] [-then SERVICE/METHOD:PAYLOAD]... SOCK SERVICE METHOD PAYLOAD [timeout_ms] [k=v ...]
  ttrpcpeer bench-client SOCK SIZE SECONDS CONCURRENCY`)
	os.Exit(2)
}

func fatal(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "ttrpcpeer: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	switch os.Args[1] {
	case "server":
		serve(os.Args[2], false)
	case "bench-server":
		serve(os.Args[2], true)
	case "client":
		os.Exit(client(os.Args[2:]))
	case "bench-client":
		benchClient(os.Args[2:])
	default:
		usage()
	}
}

// ---- server ----------------------------------------------------------------------------------

func unmarshalRaw(unmarshal func(interface{}) error) ([]byte, error) {
	var req Raw
	if err := unmarshal(&req); err != nil {
		return nil, err
	}
	return req.B, nil
}

// echoMethods builds the service; announce (nil in bench-server) is told when a Sleep starts, so tests
// can act while a call is known to be in flight.
func echoMethods(announce func(string)) map[string]ttrpc.Method {
	return map[string]ttrpc.Method{
		"Echo": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			p, err := unmarshalRaw(unmarshal)
			if err != nil {
				return nil, err
			}
			return &Raw{B: p}, nil
		},
		// Payload "CODE:MESSAGE" -> that status.
		"Fail": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			p, err := unmarshalRaw(unmarshal)
			if err != nil {
				return nil, err
			}
			parts := strings.SplitN(string(p), ":", 2)
			code, cerr := strconv.Atoi(parts[0])
			if len(parts) != 2 || cerr != nil {
				return nil, status.Errorf(codes.InvalidArgument, "Fail payload must be CODE:MESSAGE, got %q", p)
			}
			return nil, status.Error(codes.Code(code), parts[1])
		},
		// Payload: decimal milliseconds. Replies with the payload, or the ctx error at the deadline.
		"Sleep": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			p, err := unmarshalRaw(unmarshal)
			if err != nil {
				return nil, err
			}
			ms, err := strconv.Atoi(string(p))
			if err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "Sleep payload must be decimal milliseconds, got %q", p)
			}
			if announce != nil {
				announce(fmt.Sprintf("sleeping %d", ms))
			}
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
				return &Raw{B: p}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
		// Replies "deadline=yes|no\n" then "key=value\n" per metadata value, keys sorted, values in
		// received order.
		"Meta": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			if _, err := unmarshalRaw(unmarshal); err != nil {
				return nil, err
			}
			var b strings.Builder
			_, hasDeadline := ctx.Deadline()
			if hasDeadline {
				b.WriteString("deadline=yes\n")
			} else {
				b.WriteString("deadline=no\n")
			}
			md, _ := ttrpc.GetMetadata(ctx)
			keys := make([]string, 0, len(md))
			for k := range md {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				for _, v := range md[k] {
					fmt.Fprintf(&b, "%s=%s\n", k, v)
				}
			}
			return &Raw{B: []byte(b.String())}, nil
		},
	}
}

func serve(sock string, quiet bool) {
	if quiet {
		logrus.SetLevel(logrus.PanicLevel)
	}
	srv, err := ttrpc.NewServer(ttrpc.WithServerHandshaker(ttrpc.UnixSocketRequireSameUser()))
	if err != nil {
		fatal("new server: %v", err)
	}
	var announce func(string)
	if !quiet {
		var mu sync.Mutex
		announce = func(line string) { mu.Lock(); defer mu.Unlock(); fmt.Println(line) }
	}
	srv.Register(serviceName, echoMethods(announce))
	l, err := net.Listen("unix", sock)
	if err != nil {
		fatal("listen on %s: %v", sock, err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		srv.Close() // closes the listener, which unlinks the socket file
		os.Exit(0)
	}()
	fmt.Println("ready")
	if err := srv.Serve(context.Background(), l); err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
		fatal("serve: %v", err)
	}
}

// ---- client ----------------------------------------------------------------------------------

type call struct {
	service, method string
	payload         []byte
}

func parsePayload(s string) ([]byte, error) {
	if strings.HasPrefix(s, "@") {
		return ioutil.ReadFile(s[1:])
	}
	return hex.DecodeString(s)
}

type thenFlags []string

func (t *thenFlags) String() string     { return strings.Join(*t, ",") }
func (t *thenFlags) Set(v string) error { *t = append(*t, v); return nil }

// errorCode is what a caller would see: the status code, or the code ttrpc's server would give a
// context error (the client returns ctx.Err() itself when its own deadline fires first).
func errorCode(err error) (codes.Code, string) {
	if st, ok := status.FromError(err); ok {
		return st.Code(), st.Message()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded, err.Error()
	case errors.Is(err, context.Canceled):
		return codes.Canceled, err.Error()
	}
	return codes.Unknown, err.Error()
}

func client(args []string) int {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	parallel := fs.Bool("parallel", false, "issue all calls at once on the one connection")
	var then thenFlags
	fs.Var(&then, "then", "another call SERVICE/METHOD:PAYLOAD on the same connection (repeatable)")
	fs.Usage = usage
	_ = fs.Parse(args)
	pos := fs.Args()
	if len(pos) < 4 {
		usage()
	}
	first, err := parsePayload(pos[3])
	if err != nil {
		fatal("payload %q: %v", pos[3], err)
	}
	calls := []call{{pos[1], pos[2], first}}
	for _, t := range then {
		i, j := strings.Index(t, "/"), strings.Index(t, ":")
		if i < 0 || j < i {
			fatal("-then %q: want SERVICE/METHOD:PAYLOAD", t)
		}
		p, err := parsePayload(t[j+1:])
		if err != nil {
			fatal("-then %q payload: %v", t, err)
		}
		calls = append(calls, call{t[:i], t[i+1 : j], p})
	}
	var timeout time.Duration
	md := ttrpc.MD{}
	for i, a := range pos[4:] {
		if i == 0 && !strings.Contains(a, "=") {
			ms, err := strconv.Atoi(a)
			if err != nil {
				fatal("timeout_ms %q: %v", a, err)
			}
			timeout = time.Duration(ms) * time.Millisecond
			continue
		}
		kv := strings.SplitN(a, "=", 2)
		if len(kv) != 2 {
			fatal("metadata %q: want k=v", a)
		}
		md.Append(kv[0], kv[1])
	}

	conn, err := net.Dial("unix", pos[0])
	if err != nil {
		fatal("dial %s: %v", pos[0], err)
	}
	c := ttrpc.NewClient(conn)
	defer c.Close()

	var (
		mu     sync.Mutex
		failed bool
	)
	do := func(i int, cl call) {
		ctx := context.Background()
		if len(md) > 0 {
			ctx = ttrpc.WithMetadata(ctx, md)
		}
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		var resp Raw
		err := c.Call(ctx, cl.service, cl.method, &Raw{B: cl.payload}, &resp)
		prefix := ""
		if len(calls) > 1 {
			prefix = fmt.Sprintf("#%d ", i)
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			code, msg := errorCode(err)
			failed = true
			fmt.Printf("%serror code=%d msg=%s\n", prefix, code, strings.ReplaceAll(msg, "\n", `\n`))
			return
		}
		fmt.Printf("%s%s\n", prefix, hex.EncodeToString(resp.B))
	}
	if *parallel {
		var wg sync.WaitGroup
		for i, cl := range calls {
			wg.Add(1)
			go func(i int, cl call) { defer wg.Done(); do(i, cl) }(i, cl)
		}
		wg.Wait()
	} else {
		for i, cl := range calls {
			do(i, cl)
		}
	}
	if failed {
		return 3
	}
	return 0
}

// ---- benchmark client ------------------------------------------------------------------------

// benchClient runs CONCURRENCY callers of Echo(SIZE bytes) on one connection for SECONDS and prints
// {"calls","seconds","calls_per_sec","p50_us","p99_us","mb_per_sec"} (MB = 1e6 payload bytes, one way).
func benchClient(args []string) {
	if len(args) != 4 {
		usage()
	}
	size, err1 := strconv.Atoi(args[1])
	secs, err2 := strconv.ParseFloat(args[2], 64)
	conc, err3 := strconv.Atoi(args[3])
	if err1 != nil || err2 != nil || err3 != nil || size < 0 || secs <= 0 || conc <= 0 {
		fatal("bench-client: SIZE, SECONDS and CONCURRENCY must be positive numbers, got %v", args[1:])
	}
	conn, err := net.Dial("unix", args[0])
	if err != nil {
		fatal("dial %s: %v", args[0], err)
	}
	c := ttrpc.NewClient(conn)
	defer c.Close()
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i)
	}
	var (
		mu   sync.Mutex
		lats []time.Duration
		wg   sync.WaitGroup
		fail error
	)
	start := time.Now()
	end := start.Add(time.Duration(secs * float64(time.Second)))
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(end) {
				t0 := time.Now()
				var resp Raw
				if err := c.Call(context.Background(), serviceName, "Echo", &Raw{B: payload}, &resp); err != nil {
					mu.Lock()
					fail = err
					mu.Unlock()
					return
				}
				if len(resp.B) != size {
					mu.Lock()
					fail = fmt.Errorf("echo returned %d bytes, sent %d", len(resp.B), size)
					mu.Unlock()
					return
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	if fail != nil {
		fatal("bench-client: %v", fail)
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	pct := func(p float64) float64 {
		if len(lats) == 0 {
			return 0
		}
		i := int(p * float64(len(lats)-1))
		return float64(lats[i].Nanoseconds()) / 1e3
	}
	out, _ := json.Marshal(map[string]float64{
		"calls":         float64(len(lats)),
		"seconds":       elapsed,
		"calls_per_sec": float64(len(lats)) / elapsed,
		"p50_us":        pct(0.50),
		"p99_us":        pct(0.99),
		"mb_per_sec":    float64(len(lats)) * float64(size) / elapsed / 1e6,
	})
	fmt.Println(string(out))
}
