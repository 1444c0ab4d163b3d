// Tests of the command:local:Command provider through its gRPC server methods, called
// in-process with marshalled property maps, running real /bin/sh commands.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

const testURN = "urn:pulumi:test::project::command:local:Command::step"

// props marshals a weakly typed map the way the engine sends inputs; values may
// already be resource.PropertyValue (secrets, unknowns).
func props(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	pm := resource.NewPropertyMapFromMapRepl(m, nil, func(v any) (resource.PropertyValue, bool) {
		pv, ok := v.(resource.PropertyValue)
		return pv, ok
	})
	s, err := plugin.MarshalProperties(pm, marshalOpts)
	if err != nil {
		t.Fatalf("marshal %v: %v", m, err)
	}
	return s
}

func unmarshal(t *testing.T, s *structpb.Struct) resource.PropertyMap {
	t.Helper()
	pm, err := plugin.UnmarshalProperties(s, marshalOpts)
	if err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return pm
}

func str(t *testing.T, pm resource.PropertyMap, key string) string {
	t.Helper()
	v := pm[resource.PropertyKey(key)]
	if !v.IsString() {
		t.Fatalf("output %s is %v, not a string", key, v)
	}
	return v.StringValue()
}

func create(t *testing.T, p *commandProvider, inputs map[string]any) (resource.PropertyMap, error) {
	t.Helper()
	resp, err := p.Create(context.Background(), &pulumirpc.CreateRequest{Urn: testURN, Properties: props(t, inputs)})
	if err != nil {
		return nil, err
	}
	if resp.GetId() == "" {
		t.Fatalf("Create returned no id")
	}
	return unmarshal(t, resp.GetProperties()), nil
}

func mustCreate(t *testing.T, p *commandProvider, inputs map[string]any) resource.PropertyMap {
	t.Helper()
	outs, err := create(t, p, inputs)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return outs
}

func update(t *testing.T, p *commandProvider, olds resource.PropertyMap, news map[string]any,
) (resource.PropertyMap, error) {
	t.Helper()
	oldProps, err := plugin.MarshalProperties(olds, marshalOpts)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.Update(context.Background(), &pulumirpc.UpdateRequest{
		Urn: testURN, Id: "id", Olds: oldProps, News: props(t, news),
	})
	if err != nil {
		return nil, err
	}
	return unmarshal(t, resp.GetProperties()), nil
}

func del(t *testing.T, p *commandProvider, olds resource.PropertyMap) error {
	t.Helper()
	oldProps, err := plugin.MarshalProperties(olds, marshalOpts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Delete(context.Background(), &pulumirpc.DeleteRequest{Urn: testURN, Id: "id", Properties: oldProps})
	return err
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCreateCapturesStdoutAndStderr(t *testing.T) {
	p := newCommandProvider(nil)
	outs := mustCreate(t, p, map[string]any{"create": "echo out; echo err >&2"})
	if got := str(t, outs, "stdout"); got != "out" {
		t.Errorf("stdout = %q, want %q", got, "out")
	}
	if got := str(t, outs, "stderr"); got != "err" {
		t.Errorf("stderr = %q, want %q", got, "err")
	}
	if got := str(t, outs, "create"); got != "echo out; echo err >&2" {
		t.Errorf("the outputs carry the inputs: create = %q", got)
	}
}

func TestCreateWithoutCommandRunsNothing(t *testing.T) {
	p := newCommandProvider(nil)
	outs := mustCreate(t, p, map[string]any{"delete": "true"})
	if got := str(t, outs, "stdout"); got != "" {
		t.Errorf("stdout = %q, want empty", got)
	}
}

func TestCreateFailureIsAnError(t *testing.T) {
	p := newCommandProvider(nil)
	_, err := create(t, p, map[string]any{"create": "echo boom >&2; exit 3"})
	if err == nil {
		t.Fatal("a failing command must fail the create")
	}
	for _, want := range []string{"boom", "3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestUpdateRunsUpdateWithPreviousOutputInEnv(t *testing.T) {
	p := newCommandProvider(nil)
	olds := mustCreate(t, p, map[string]any{"create": "echo first; echo warn >&2"})
	outs, err := update(t, p, olds, map[string]any{
		"create": "echo first",
		"update": `echo "updated from $PULUMI_COMMAND_STDOUT/$PULUMI_COMMAND_STDERR"`,
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := str(t, outs, "stdout"); got != "updated from first/warn" {
		t.Errorf("stdout = %q", got)
	}
}

func TestUpdateWithoutUpdateRunsCreate(t *testing.T) {
	p := newCommandProvider(nil)
	olds := mustCreate(t, p, map[string]any{"create": "echo one"})
	outs, err := update(t, p, olds, map[string]any{"create": "echo two; echo was $PULUMI_COMMAND_STDOUT"})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := str(t, outs, "stdout"); got != "two\nwas one" {
		t.Errorf("stdout = %q", got)
	}
}

func TestAddPreviousOutputInEnvFalse(t *testing.T) {
	p := newCommandProvider(nil)
	olds := mustCreate(t, p, map[string]any{"create": "echo one"})
	outs, err := update(t, p, olds, map[string]any{
		"create":                 `echo "[${PULUMI_COMMAND_STDOUT-unset}]"`,
		"addPreviousOutputInEnv": false,
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := str(t, outs, "stdout"); got != "[unset]" {
		t.Errorf("stdout = %q, want [unset]", got)
	}
}

func TestDeleteRunsWithPreviousOutputInEnv(t *testing.T) {
	dir := t.TempDir()
	p := newCommandProvider(nil)
	olds := mustCreate(t, p, map[string]any{
		"create": "echo created",
		"delete": `printf '%s' "$PULUMI_COMMAND_STDOUT" > deleted`,
		"dir":    dir,
	})
	if err := del(t, p, olds); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "deleted")); got != "created" {
		t.Errorf("delete saw PULUMI_COMMAND_STDOUT = %q, want %q", got, "created")
	}
}

func TestDeleteWithoutCommandIsANoop(t *testing.T) {
	p := newCommandProvider(nil)
	olds := mustCreate(t, p, map[string]any{"create": "echo x"})
	if err := del(t, p, olds); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

func TestDeleteFailureIsAnError(t *testing.T) {
	p := newCommandProvider(nil)
	olds := mustCreate(t, p, map[string]any{"create": "true", "delete": "echo nope >&2; exit 1"})
	if err := del(t, p, olds); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("Delete error = %v, want one carrying the command's output", err)
	}
}

func TestEnvironmentDirInterpreterStdin(t *testing.T) {
	dir := t.TempDir()
	p := newCommandProvider(nil)
	outs := mustCreate(t, p, map[string]any{
		"create": `printf '%s|%s|%s|' "$FOO" "$SECRET" "$(pwd)"; cat`,
		"environment": map[string]any{
			"FOO":    "bar baz",
			"SECRET": resource.MakeSecret(resource.NewProperty("s3cret")),
		},
		"dir":   dir,
		"stdin": "from stdin",
	})
	want := "bar baz|s3cret|" + dir + "|from stdin"
	if got := str(t, outs, "stdout"); got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
}

func TestInterpreterGetsCommandAsLastArgument(t *testing.T) {
	p := newCommandProvider(nil)
	outs := mustCreate(t, p, map[string]any{
		"create":      "hello",
		"interpreter": []any{"/bin/echo", "via-echo"},
	})
	if got := str(t, outs, "stdout"); got != "via-echo hello" {
		t.Errorf("stdout = %q, want %q", got, "via-echo hello")
	}
}

func TestMissingDirFails(t *testing.T) {
	p := newCommandProvider(nil)
	if _, err := create(t, p, map[string]any{"create": "true", "dir": "/nonexistent/dir"}); err == nil {
		t.Fatal("a command in a missing dir must fail")
	}
}

func TestPreviewReturnsUnknownOutputsAndRunsNothing(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	p := newCommandProvider(nil)
	inputs := map[string]any{"create": "touch " + marker, "update": "touch " + marker}
	resp, err := p.Create(context.Background(), &pulumirpc.CreateRequest{
		Urn: testURN, Properties: props(t, inputs), Preview: true,
	})
	if err != nil {
		t.Fatalf("Create preview: %v", err)
	}
	outs := unmarshal(t, resp.GetProperties())
	for _, k := range []resource.PropertyKey{"stdout", "stderr"} {
		if !outs[k].IsComputed() {
			t.Errorf("preview create: %s = %v, want unknown", k, outs[k])
		}
	}
	olds := resource.NewPropertyMapFromMap(map[string]any{"create": "true", "stdout": "old", "stderr": ""})
	oldProps, _ := plugin.MarshalProperties(olds, marshalOpts)
	uresp, err := p.Update(context.Background(), &pulumirpc.UpdateRequest{
		Urn: testURN, Id: "id", Olds: oldProps, News: props(t, inputs), Preview: true,
	})
	if err != nil {
		t.Fatalf("Update preview: %v", err)
	}
	uouts := unmarshal(t, uresp.GetProperties())
	for _, k := range []resource.PropertyKey{"stdout", "stderr"} {
		if !uouts[k].IsComputed() {
			t.Errorf("preview update: %s = %v, want unknown", k, uouts[k])
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("a preview ran the command")
	}
}

func diff(t *testing.T, p *commandProvider, olds, news map[string]any) *pulumirpc.DiffResponse {
	t.Helper()
	resp, err := p.Diff(context.Background(), &pulumirpc.DiffRequest{
		Urn: testURN, Id: "id", Olds: props(t, olds), OldInputs: props(t, olds), News: props(t, news),
	})
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	return resp
}

func TestDiff(t *testing.T) {
	p := newCommandProvider(nil)
	base := map[string]any{"create": "echo a", "triggers": []any{"x", 1}}

	if d := diff(t, p, base, base); d.GetChanges() != pulumirpc.DiffResponse_DIFF_NONE {
		t.Errorf("same inputs: changes = %v, want none", d.GetChanges())
	}

	d := diff(t, p, base, map[string]any{"create": "echo b", "triggers": []any{"x", 1}})
	if d.GetChanges() != pulumirpc.DiffResponse_DIFF_SOME || len(d.GetReplaces()) != 0 {
		t.Errorf("changed create: changes %v replaces %v, want an in-place update", d.GetChanges(), d.GetReplaces())
	}
	if k := d.GetDetailedDiff()["create"].GetKind(); k != pulumirpc.PropertyDiff_UPDATE {
		t.Errorf("changed create: kind %v", k)
	}

	d = diff(t, p, base, map[string]any{"create": "echo a", "triggers": []any{"y", 1}})
	if d.GetChanges() != pulumirpc.DiffResponse_DIFF_SOME || len(d.GetReplaces()) != 1 || d.GetReplaces()[0] != "triggers" {
		t.Errorf("changed triggers: changes %v replaces %v, want a replace on triggers", d.GetChanges(), d.GetReplaces())
	}
	if k := d.GetDetailedDiff()["triggers"].GetKind(); k != pulumirpc.PropertyDiff_UPDATE_REPLACE {
		t.Errorf("changed triggers: kind %v, want UPDATE_REPLACE", k)
	}

	d = diff(t, p, base, map[string]any{
		"create": "echo a", "triggers": resource.MakeComputed(resource.NewProperty("")),
	})
	if len(d.GetReplaces()) != 1 {
		t.Errorf("unknown triggers: replaces %v, want triggers", d.GetReplaces())
	}

	d = diff(t, p, map[string]any{"create": "echo a"}, base)
	if len(d.GetReplaces()) != 1 || d.GetDetailedDiff()["triggers"].GetKind() != pulumirpc.PropertyDiff_ADD_REPLACE {
		t.Errorf("added triggers: %v", d)
	}
}

func check(t *testing.T, p *commandProvider, news map[string]any) *pulumirpc.CheckResponse {
	t.Helper()
	resp, err := p.Check(context.Background(), &pulumirpc.CheckRequest{Urn: testURN, News: props(t, news)})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

func failureText(resp *pulumirpc.CheckResponse) string {
	var parts []string
	for _, f := range resp.GetFailures() {
		parts = append(parts, f.GetProperty()+": "+f.GetReason())
	}
	return strings.Join(parts, "; ")
}

func TestCheckAcceptsValidAndUnknownInputs(t *testing.T) {
	p := newCommandProvider(nil)
	unknown := resource.MakeComputed(resource.NewProperty(""))
	resp := check(t, p, map[string]any{
		"create":      unknown,
		"environment": map[string]any{"A": "1", "B": unknown, "C": resource.MakeSecret(resource.NewProperty("x"))},
		"dir":         "/tmp",
		"interpreter": []any{"/bin/sh", "-c"},
		"triggers":    []any{1, "a", map[string]any{"k": true}},
		"logging":     "stderr",
		"stdin":       unknown,
	})
	if len(resp.GetFailures()) != 0 {
		t.Errorf("failures: %s", failureText(resp))
	}
	if resp := check(t, p, map[string]any{"create": "true", "environment": unknown}); len(resp.GetFailures()) != 0 {
		t.Errorf("unknown environment: %s", failureText(resp))
	}
}

func TestCheckRejectsUnsupportedInputs(t *testing.T) {
	p := newCommandProvider(nil)
	resp := check(t, p, map[string]any{"create": "true", "assetPaths": []any{"*"}, "logging": "loud"})
	text := failureText(resp)
	for _, want := range []string{"assetPaths", "logging"} {
		if !strings.Contains(text, want) {
			t.Errorf("failures %q do not name %s", text, want)
		}
	}
	if _, err := p.Check(context.Background(), &pulumirpc.CheckRequest{
		Urn:  "urn:pulumi:test::project::command:remote:Command::step",
		News: props(t, map[string]any{"create": "true"}),
	}); err == nil {
		t.Error("Check accepted a type other than command:local:Command")
	}
}

// fakeEngine records the Log requests a provider sends to the engine.
type fakeEngine struct {
	pulumirpc.UnimplementedEngineServer
	delay time.Duration // how long each Log call takes
	mu    sync.Mutex
	logs  []*pulumirpc.LogRequest
}

func (e *fakeEngine) Log(_ context.Context, req *pulumirpc.LogRequest) (*emptypb.Empty, error) {
	time.Sleep(e.delay)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logs = append(e.logs, req)
	return &emptypb.Empty{}, nil
}

func (e *fakeEngine) messages() []*pulumirpc.LogRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*pulumirpc.LogRequest(nil), e.logs...)
}

// withEngine starts a fake engine on a loopback port and returns a provider logging to it.
func withEngine(t *testing.T) (*commandProvider, *fakeEngine) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	engine := &fakeEngine{}
	srv := grpc.NewServer()
	pulumirpc.RegisterEngineServer(srv, engine)
	go func() { _ = srv.Serve(lis) }()
	host, err := provider.NewHostClient(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = host.Close()
		srv.Stop()
	})
	return newCommandProvider(host), engine
}

func logText(logs []*pulumirpc.LogRequest) string {
	var msgs []string
	for _, l := range logs {
		msgs = append(msgs, l.GetMessage())
	}
	return strings.Join(msgs, "\n")
}

func TestLoggingForwardsTheChosenStreams(t *testing.T) {
	for _, tc := range []struct {
		logging    string
		want, not_ []string
	}{
		{"", []string{"to-out", "to-err"}, nil},
		{"stdoutAndStderr", []string{"to-out", "to-err"}, nil},
		{"stdout", []string{"to-out"}, []string{"to-err"}},
		{"stderr", []string{"to-err"}, []string{"to-out"}},
		{"none", nil, []string{"to-out", "to-err"}},
	} {
		t.Run("logging="+tc.logging, func(t *testing.T) {
			p, engine := withEngine(t)
			inputs := map[string]any{"create": "echo to-out; echo to-err >&2"}
			if tc.logging != "" {
				inputs["logging"] = tc.logging
			}
			outs := mustCreate(t, p, inputs)
			if str(t, outs, "stdout") != "to-out" || str(t, outs, "stderr") != "to-err" {
				t.Errorf("logging must not change the outputs: %v", outs)
			}
			text := logText(engine.messages())
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("logs %q lack %q", text, w)
				}
			}
			for _, n := range tc.not_ {
				if strings.Contains(text, n) {
					t.Errorf("logs %q carry %q", text, n)
				}
			}
			for _, l := range engine.messages() {
				if l.GetUrn() != testURN {
					t.Errorf("log for urn %q, want %q", l.GetUrn(), testURN)
				}
			}
		})
	}
}

func TestGetPluginInfoAndSchema(t *testing.T) {
	p := newCommandProvider(nil)
	info, err := p.GetPluginInfo(context.Background(), &emptypb.Empty{})
	if err != nil || info.GetVersion() == "" {
		t.Errorf("GetPluginInfo = %v, %v", info, err)
	}
	cfg, err := p.Configure(context.Background(), &pulumirpc.ConfigureRequest{})
	if err != nil || !cfg.GetSupportsPreview() {
		t.Errorf("Configure = %v, %v; the provider must support previews", cfg, err)
	}
}

// waitForFile polls until path exists, so a test knows a command is running.
func waitForFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never appeared", path)
}

// wrongTypes are inputs of the wrong type and the message that must name each.
var wrongTypes = []struct {
	name   string
	inputs map[string]any
	want   string
}{
	{"create number", map[string]any{"create": 5}, "create must be a string"},
	{"update bool", map[string]any{"create": "true", "update": true}, "update must be a string"},
	{"delete list", map[string]any{"create": "true", "delete": []any{"rm"}}, "delete must be a string"},
	{"dir number", map[string]any{"create": "true", "dir": 1}, "dir must be a string"},
	{"stdin object", map[string]any{"create": "true", "stdin": map[string]any{}}, "stdin must be a string"},
	{"logging number", map[string]any{"create": "true", "logging": 2}, "logging must be a string"},
	{"environment value", map[string]any{"create": "true", "environment": map[string]any{"OK": "1", "FOO": 5}},
		"environment.FOO must be a string"},
	{"environment secret value", map[string]any{"create": "true", "environment": map[string]any{
		"FOO": resource.MakeSecret(resource.NewProperty(true)),
	}}, "environment.FOO must be a string"},
	{"environment list", map[string]any{"create": "true", "environment": []any{"FOO=1"}},
		"environment must be a map of strings"},
	{"environment key", map[string]any{"create": "true", "environment": map[string]any{"A=B": "1"}},
		`environment key "A=B"`},
	{"interpreter string", map[string]any{"create": "true", "interpreter": "/bin/sh"},
		"interpreter must be a list of strings"},
	{"interpreter element", map[string]any{"create": "true", "interpreter": []any{"/bin/sh", 1}},
		"interpreter[1] must be a string"},
	{"addPreviousOutputInEnv string", map[string]any{"create": "true", "addPreviousOutputInEnv": "yes"},
		"addPreviousOutputInEnv must be a boolean"},
}

func TestCheckRefusesWrongInputTypes(t *testing.T) {
	p := newCommandProvider(nil)
	for _, tc := range wrongTypes {
		t.Run(tc.name, func(t *testing.T) {
			text := failureText(check(t, p, tc.inputs))
			if !strings.Contains(text, tc.want) {
				t.Errorf("Check failures %q, want one saying %q", text, tc.want)
			}
		})
	}
}

func TestWrongInputTypesAreRefusedWhereUsed(t *testing.T) {
	for _, tc := range wrongTypes {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			marker := filepath.Join(dir, "ran")
			inputs := map[string]any{}
			for k, v := range tc.inputs {
				inputs[k] = v
			}
			if _, ok := inputs["update"]; !ok {
				inputs["update"] = "touch " + marker
			}
			if c, ok := inputs["create"].(string); ok && c == "true" {
				inputs["create"] = "touch " + marker
			}
			if _, ok := inputs["delete"]; !ok {
				inputs["delete"] = "touch " + marker
			}
			p := newCommandProvider(nil)
			if _, err := create(t, p, inputs); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Create error = %v, want one saying %q", err, tc.want)
			}
			olds := resource.NewPropertyMapFromMap(map[string]any{"create": "true", "stdout": "", "stderr": ""})
			if _, err := update(t, p, olds, inputs); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Update error = %v, want one saying %q", err, tc.want)
			}
			state := resource.NewPropertyMapFromMapRepl(inputs, nil, func(v any) (resource.PropertyValue, bool) {
				pv, ok := v.(resource.PropertyValue)
				return pv, ok
			})
			if err := del(t, p, state); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Delete error = %v, want one saying %q", err, tc.want)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Errorf("a command ran despite an input of the wrong type")
			}
		})
	}
}

func TestFailureErrorCarriesTheWholeOutput(t *testing.T) {
	p := newCommandProvider(nil)
	_, err := create(t, p, map[string]any{
		"create": `echo first-stdout-line; i=1; while [ $i -le 100 ]; do echo "stderr line $i" >&2; i=$((i+1)); done; ` +
			`echo last-stdout-line; exit 4`,
	})
	if err == nil {
		t.Fatal("the command failed; Create must too")
	}
	for _, want := range []string{"exit code 4", "first-stdout-line", "stderr line 1\n", "stderr line 50\n",
		"stderr line 100", "last-stdout-line"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}
}

func TestFailureErrorOutputIsBoundedFromTheFront(t *testing.T) {
	p := newCommandProvider(nil)
	// 5 MiB of lines between a first and a last marker.
	_, err := create(t, p, map[string]any{
		"create": `echo HEAD-MARKER; head -c 5242880 /dev/zero | tr '\0' 'x' | fold -w 1023; echo; echo TAIL-MARKER >&2; exit 1`,
	})
	if err == nil {
		t.Fatal("the command failed; Create must too")
	}
	msg := err.Error()
	if len(msg) > maxErrorOutput+4096 {
		t.Errorf("error is %d bytes, more than the %d bound", len(msg), maxErrorOutput)
	}
	if !strings.Contains(msg, "TAIL-MARKER") {
		t.Errorf("error lacks the end of the output")
	}
	if strings.Contains(msg, "HEAD-MARKER") {
		t.Errorf("error kept the front of an output over the bound")
	}
	if !strings.Contains(msg, "bytes of earlier output cut") {
		t.Errorf("error does not say output was cut: %.300s", msg)
	}
}

func TestOutputLineOver16MiBDoesNotHang(t *testing.T) {
	p := newCommandProvider(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const lineLen = 17 << 20
	resp, err := p.Create(ctx, &pulumirpc.CreateRequest{Urn: testURN, Properties: props(t, map[string]any{
		"create": fmt.Sprintf(`head -c %d /dev/zero | tr '\0' 'y'; echo; echo after; head -c %d /dev/zero | tr '\0' 'z' >&2`,
			lineLen, lineLen),
	})})
	if err != nil {
		t.Fatalf("Create: %.300v", err)
	}
	outs := unmarshal(t, resp.GetProperties())
	stdout, stderr := str(t, outs, "stdout"), str(t, outs, "stderr")
	if len(stdout) != lineLen+len("\nafter") || !strings.HasSuffix(stdout, "y\nafter") {
		t.Errorf("stdout is %d bytes ending %q", len(stdout), stdout[max(0, len(stdout)-20):])
	}
	if len(stderr) != lineLen || strings.Trim(stderr, "z") != "" {
		t.Errorf("stderr is %d bytes, want %d of z", len(stderr), lineLen)
	}
}

func TestOutputIsKeptByteForByte(t *testing.T) {
	p := newCommandProvider(nil)
	for _, tc := range []struct{ script, stdout, stderr string }{
		// Upstream 1.2.1 trims exactly one trailing "\n" from each stream and keeps the rest.
		{`printf 'a\r\nb\r\n\n\n'; printf 'x\n\n' >&2`, "a\r\nb\r\n\n", "x\n"},
		{`printf 'crlf\r\n'`, "crlf\r", ""},
		{`printf 'no-newline'; printf 'e' >&2`, "no-newline", "e"},
		{`printf '\n  indented\t \n'`, "\n  indented\t ", ""},
		{`printf '\n'`, "", ""},
		{`printf 'tab\tand \033[1mansi\033[0m\n'`, "tab\tand \033[1mansi\033[0m", ""},
		{`printf 'caf\303\251 \342\234\223\n'`, "café ✓", ""},
	} {
		outs := mustCreate(t, p, map[string]any{"create": tc.script})
		if got := str(t, outs, "stdout"); got != tc.stdout {
			t.Errorf("%s: stdout = %q, want %q", tc.script, got, tc.stdout)
		}
		if got := str(t, outs, "stderr"); got != tc.stderr {
			t.Errorf("%s: stderr = %q, want %q", tc.script, got, tc.stderr)
		}
	}
}

func TestOutputThatIsNotUTF8StillMarshals(t *testing.T) {
	// A protobuf string must be UTF-8, or the response cannot be sent to the engine.
	p := newCommandProvider(nil)
	resp, err := p.Create(context.Background(), &pulumirpc.CreateRequest{Urn: testURN, Properties: props(t,
		map[string]any{"create": `printf 'ok \377\376 end\n'`})})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := proto.Marshal(resp); err != nil {
		t.Fatalf("the response cannot be sent: %v", err)
	}
	if got := str(t, unmarshal(t, resp.GetProperties()), "stdout"); got != "ok \uFFFD end" {
		t.Errorf("stdout = %q", got)
	}
}

func TestProgressIsEphemeralStatus(t *testing.T) {
	p, engine := withEngine(t)
	mustCreate(t, p, map[string]any{"create": "echo step one; echo step two >&2; printf 'no newline'"})
	logs := engine.messages()
	if text := logText(logs); !strings.Contains(text, "step one") || !strings.Contains(text, "step two") ||
		!strings.Contains(text, "no newline") {
		t.Errorf("logs %q lack the command's lines", text)
	}
	for _, l := range logs {
		if !l.GetEphemeral() || l.GetSeverity() != pulumirpc.LogSeverity_INFO {
			t.Errorf("log %q: ephemeral %v severity %v, want an ephemeral info status", l.GetMessage(),
				l.GetEphemeral(), l.GetSeverity())
		}
	}
}

func TestLongLogLinesAreCutButOutputsAreNot(t *testing.T) {
	p, engine := withEngine(t)
	outs := mustCreate(t, p, map[string]any{"create": "head -c 200000 /dev/zero | tr '\\0' 'q'; echo; echo short"})
	if got := len(str(t, outs, "stdout")); got != 200000+len("\nshort") {
		t.Errorf("stdout is %d bytes", got)
	}
	for _, l := range engine.messages() {
		if len(l.GetMessage()) > maxLogLine+100 {
			t.Errorf("a log line of %d bytes", len(l.GetMessage()))
		}
	}
	if text := logText(engine.messages()); !strings.Contains(text, "short") || !strings.Contains(text, "[line cut]") {
		t.Errorf("logs lack the cut long line or the short one")
	}
}

func TestSlowEngineDoesNotSlowTheCommand(t *testing.T) {
	p, engine := withEngine(t)
	engine.delay = 20 * time.Millisecond
	start := time.Now()
	outs := mustCreate(t, p, map[string]any{"create": "seq 1 1000"})
	if elapsed := time.Since(start); elapsed > 8*time.Second {
		t.Errorf("1000 lines took %v with a 20ms log call: logging holds up the command", elapsed)
	}
	if !strings.HasSuffix(str(t, outs, "stdout"), "\n1000") {
		t.Errorf("stdout lost lines")
	}
	if text := logText(engine.messages()); !strings.Contains(text, "1000") {
		t.Errorf("the last line was not shown")
	}
}

// runAsync starts a Create and returns a channel with its error.
func runAsync(t *testing.T, p *commandProvider, ctx context.Context, req *pulumirpc.CreateRequest) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := p.Create(ctx, req)
		done <- err
	}()
	return done
}

// killGroupOnCleanup makes sure a test leaves no process behind, whatever the provider did:
// the command writes its process group id ($$ of the shell, its leader) to pidFile.
func killGroupOnCleanup(t *testing.T, pidFile string) {
	t.Cleanup(func() {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return
		}
		var pid int
		if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 1 {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	})
}

// alive tells whether a process runs: a zombie (killed, not yet reaped by whoever
// inherited it) does not.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func waitErr(t *testing.T, done <-chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		t.Fatalf("the command was not stopped within %v", within)
		return nil
	}
}

// A shell that reports SIGTERM and exits, with a child that would outlive it.
const trapsTERM = `echo $$ > pid; sleep 60 & echo $! > child; ` +
	`trap 'echo got TERM; exit 7' TERM; touch started; while :; do sleep 0.05; done`

func TestCancelSendsTERMToTheProcessGroup(t *testing.T) {
	dir := t.TempDir()
	killGroupOnCleanup(t, filepath.Join(dir, "pid"))
	p := newCommandProvider(nil)
	done := runAsync(t, p, context.Background(), &pulumirpc.CreateRequest{Urn: testURN, Properties: props(t,
		map[string]any{"create": trapsTERM, "dir": dir})})
	waitForFile(t, filepath.Join(dir, "started"))
	if _, err := p.Cancel(context.Background(), &emptypb.Empty{}); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	err := waitErr(t, done, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "cancelled") || !strings.Contains(err.Error(), "got TERM") {
		t.Fatalf("error = %v, want one saying it was cancelled, with the trap's output", err)
	}
	var child int
	_, _ = fmt.Sscan(readFile(t, filepath.Join(dir, "child")), &child)
	time.Sleep(100 * time.Millisecond)
	if child > 0 && alive(child) {
		t.Errorf("the command's child %d outlived the cancel: TERM did not reach the process group", child)
	}
	// After a cancel the provider starts nothing more.
	if _, err := create(t, p, map[string]any{"create": "touch " + filepath.Join(dir, "after")}); err == nil {
		t.Error("a command ran after Cancel")
	}
	if _, err := os.Stat(filepath.Join(dir, "after")); err == nil {
		t.Error("a command ran after Cancel")
	}
}

func TestCancelKillsAfterTheGracePeriod(t *testing.T) {
	defer func(g time.Duration) { killGrace = g }(killGrace)
	killGrace = 300 * time.Millisecond
	dir := t.TempDir()
	killGroupOnCleanup(t, filepath.Join(dir, "pid"))
	p := newCommandProvider(nil)
	done := runAsync(t, p, context.Background(), &pulumirpc.CreateRequest{Urn: testURN, Properties: props(t,
		map[string]any{
			"create": `echo $$ > pid; trap 'echo ignoring TERM' TERM; touch started; while :; do sleep 0.05; done`,
			"dir":    dir,
		})})
	waitForFile(t, filepath.Join(dir, "started"))
	start := time.Now()
	if _, err := p.Cancel(context.Background(), &emptypb.Empty{}); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	err := waitErr(t, done, 5*time.Second)
	if elapsed := time.Since(start); elapsed < killGrace {
		t.Errorf("stopped after %v, before the %v grace period", elapsed, killGrace)
	}
	if err == nil || !strings.Contains(err.Error(), "SIGKILL") || !strings.Contains(err.Error(), "ignoring TERM") {
		t.Fatalf("error = %v, want one saying it was killed, with the trap's output", err)
	}
}

func TestTimeoutStopsTheCommand(t *testing.T) {
	dir := t.TempDir()
	killGroupOnCleanup(t, filepath.Join(dir, "pid"))
	p := newCommandProvider(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	done := runAsync(t, p, ctx, &pulumirpc.CreateRequest{Urn: testURN, Timeout: 0.5, Properties: props(t,
		map[string]any{"create": trapsTERM, "dir": dir})})
	err := waitErr(t, done, 15*time.Second)
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("a 0.5 s timeout stopped the command after %v", elapsed)
	}
	if err == nil || !strings.Contains(err.Error(), "timed out after 500ms") || !strings.Contains(err.Error(), "got TERM") {
		t.Fatalf("error = %v, want one saying it timed out after 500ms, with the trap's output", err)
	}
}

func TestTimeoutsOfUpdateAndDelete(t *testing.T) {
	p := newCommandProvider(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	olds := resource.NewPropertyMapFromMap(map[string]any{
		"create": "true", "delete": "exec sleep 30", "stdout": "", "stderr": "",
	})
	oldProps, _ := plugin.MarshalProperties(olds, marshalOpts)
	_, err := p.Update(ctx, &pulumirpc.UpdateRequest{Urn: testURN, Id: "id", Olds: oldProps, Timeout: 1,
		News: props(t, map[string]any{"create": "true", "update": "exec sleep 30"})})
	if err == nil || !strings.Contains(err.Error(), "update command of step timed out after 1s") {
		t.Errorf("Update error = %v", err)
	}
	_, err = p.Delete(ctx, &pulumirpc.DeleteRequest{Urn: testURN, Id: "id", Properties: oldProps, Timeout: 1})
	if err == nil || !strings.Contains(err.Error(), "delete command of step timed out after 1s") {
		t.Errorf("Delete error = %v", err)
	}
	if _, err := create(t, p, map[string]any{"create": "sleep 0.1; echo in time"}); err != nil {
		t.Errorf("no timeout: %v", err)
	}
}

func TestEmptyPreviousOutputIsNotInTheEnvironment(t *testing.T) {
	// Upstream sets PULUMI_COMMAND_STDOUT/STDERR only when the previous output is not empty.
	p := newCommandProvider(nil)
	olds := mustCreate(t, p, map[string]any{"create": "echo only-stdout"})
	outs, err := update(t, p, olds, map[string]any{
		"update": `echo "[${PULUMI_COMMAND_STDOUT-unset}][${PULUMI_COMMAND_STDERR-unset}]"`,
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := str(t, outs, "stdout"); got != "[only-stdout][unset]" {
		t.Errorf("stdout = %q, want [only-stdout][unset]", got)
	}
}

func TestUpdateWithoutCommandsKeepsThePreviousOutput(t *testing.T) {
	// Upstream's Update with neither update nor create runs nothing and keeps the outputs.
	p := newCommandProvider(nil)
	olds := mustCreate(t, p, map[string]any{"create": "echo kept; echo kept-err >&2"})
	outs, err := update(t, p, olds, map[string]any{"delete": "true"})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if str(t, outs, "stdout") != "kept" || str(t, outs, "stderr") != "kept-err" {
		t.Errorf("outputs = %v, want the previous ones", outs)
	}
	if _, ok := outs["create"]; ok {
		t.Errorf("the outputs carry the new inputs, not the old: %v", outs)
	}
}
