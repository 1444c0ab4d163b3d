// Command pulumi-resource-command is imagefactory's own implementation of the
// `command:local:Command` resource that the pulumi_command SDK declares.
//
// Why it exists: the upstream provider (github.com/pulumi/pulumi-command/provider)
// is not served by the Go module proxy, and machines that reach only package
// registries cannot download its release binary. tools/setup.sh prefers the
// upstream binary when PULUMI_COMMAND_PLUGIN points at one; otherwise it builds
// this program. It implements the subset of the local.Command contract that
// this project relies on: create/update/delete commands, dir, environment,
// interpreter, stdin, triggers, logging, stdout/stderr outputs, previews with
// unknown outputs, customTimeouts and cancellation. Inputs of the wrong type are
// refused, naming the input. Assets and archives are not supported and are
// rejected at check time with a clear message. main_test.go pins the behaviour.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/emptypb"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.0.0-dev"

const localCommandType = "command:local:Command"

// inputKeys are the inputs whose change means the command must run again.
var inputKeys = []resource.PropertyKey{
	"create", "update", "delete", "dir", "environment", "interpreter", "stdin",
	"triggers", "logging", "addPreviousOutputInEnv",
}

// killGrace is how long a stopped command has between SIGTERM and SIGKILL.
var killGrace = 10 * time.Second

// maxErrorOutput bounds the output a failed command's error carries.
const maxErrorOutput = 4 << 20

var marshalOpts = plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: true, SkipNulls: true}

type commandProvider struct {
	pulumirpc.UnimplementedResourceProviderServer
	host *provider.HostClient

	// cancelled is closed by the Cancel RPC: running commands are stopped, no more start.
	cancelled  chan struct{}
	cancelOnce sync.Once
}

func main() {
	err := provider.Main("command", func(host *provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return newCommandProvider(host), nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// newCommandProvider returns the provider; host may be nil (no engine to log to).
func newCommandProvider(host *provider.HostClient) *commandProvider {
	return &commandProvider{host: host, cancelled: make(chan struct{})}
}

func (p *commandProvider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (p *commandProvider) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	return &pulumirpc.GetSchemaResponse{Schema: `{"name":"command"}`}, nil
}

func (p *commandProvider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *commandProvider) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{}, nil
}

func (p *commandProvider) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, SupportsPreview: true}, nil
}

// Cancel is the engine asking the provider to stop: on Ctrl-C, and before it closes the
// plugin at the end of an operation. Every running command is stopped, as on a timeout: SIGTERM to its process
// group, then SIGKILL after killGrace; a command asked for afterwards does not start.
func (p *commandProvider) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	p.cancelOnce.Do(func() { close(p.cancelled) })
	return &emptypb.Empty{}, nil
}

func checkType(t string) error {
	if t != localCommandType {
		return fmt.Errorf("this command provider implements only %s, not %q", localCommandType, t)
	}
	return nil
}

func (p *commandProvider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	if err := checkType(resource.URN(req.GetUrn()).Type().String()); err != nil {
		return nil, err
	}
	news, err := plugin.UnmarshalProperties(req.GetNews(), marshalOpts)
	if err != nil {
		return nil, err
	}
	var failures []*pulumirpc.CheckFailure
	for _, key := range []resource.PropertyKey{"assetPaths", "archivePaths"} {
		if v, ok := news[key]; ok && !v.IsNull() {
			failures = append(failures, &pulumirpc.CheckFailure{
				Property: string(key),
				Reason:   string(key) + " is not supported by this command provider; pass paths through environment instead",
			})
		}
	}
	_, problems := decodeInputs(news, true)
	for _, pr := range problems {
		failures = append(failures, &pulumirpc.CheckFailure{Property: pr.property, Reason: pr.reason})
	}
	return &pulumirpc.CheckResponse{Inputs: req.GetNews(), Failures: failures}, nil
}

func (p *commandProvider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	olds, err := plugin.UnmarshalProperties(req.GetOldInputs(), marshalOpts)
	if err != nil {
		return nil, err
	}
	if len(olds) == 0 {
		if olds, err = plugin.UnmarshalProperties(req.GetOlds(), marshalOpts); err != nil {
			return nil, err
		}
	}
	news, err := plugin.UnmarshalProperties(req.GetNews(), marshalOpts)
	if err != nil {
		return nil, err
	}
	var diffs, replaces []string
	detailed := map[string]*pulumirpc.PropertyDiff{}
	for _, key := range inputKeys {
		o, n := olds[key], news[key]
		if o.DeepEquals(n) && !n.ContainsUnknowns() {
			continue
		}
		if o.IsNull() && n.IsNull() {
			continue
		}
		diffs = append(diffs, string(key))
		kind := pulumirpc.PropertyDiff_UPDATE
		switch {
		case o.IsNull():
			kind = pulumirpc.PropertyDiff_ADD
		case n.IsNull():
			kind = pulumirpc.PropertyDiff_DELETE
		}
		if key == "triggers" {
			replaces = append(replaces, string(key))
			kind += pulumirpc.PropertyDiff_ADD_REPLACE - pulumirpc.PropertyDiff_ADD
		}
		detailed[string(key)] = &pulumirpc.PropertyDiff{Kind: kind, InputDiff: true}
	}
	changes := pulumirpc.DiffResponse_DIFF_NONE
	if len(diffs) > 0 {
		changes = pulumirpc.DiffResponse_DIFF_SOME
	}
	return &pulumirpc.DiffResponse{
		Changes: changes, Diffs: diffs, Replaces: replaces,
		DetailedDiff: detailed, HasDetailedDiff: true,
	}, nil
}

func (p *commandProvider) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	inputs, err := plugin.UnmarshalProperties(req.GetProperties(), marshalOpts)
	if err != nil {
		return nil, err
	}
	id := newID()
	if req.GetPreview() {
		return p.previewResponse(id, inputs)
	}
	outputs, err := p.runPhase(ctx, resource.URN(req.GetUrn()), inputs, "create", nil, req.GetTimeout())
	if err != nil {
		return nil, err
	}
	props, err := plugin.MarshalProperties(outputs, marshalOpts)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
}

func (p *commandProvider) previewResponse(id string, inputs resource.PropertyMap) (*pulumirpc.CreateResponse, error) {
	outputs := inputs.Copy()
	outputs["stdout"] = resource.MakeComputed(resource.NewStringProperty(""))
	outputs["stderr"] = resource.MakeComputed(resource.NewStringProperty(""))
	props, err := plugin.MarshalProperties(outputs, marshalOpts)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
}

func (p *commandProvider) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	news, err := plugin.UnmarshalProperties(req.GetNews(), marshalOpts)
	if err != nil {
		return nil, err
	}
	olds, err := plugin.UnmarshalProperties(req.GetOlds(), marshalOpts)
	if err != nil {
		return nil, err
	}
	if req.GetPreview() {
		outputs := news.Copy()
		outputs["stdout"] = resource.MakeComputed(resource.NewStringProperty(""))
		outputs["stderr"] = resource.MakeComputed(resource.NewStringProperty(""))
		props, err := plugin.MarshalProperties(outputs, marshalOpts)
		if err != nil {
			return nil, err
		}
		return &pulumirpc.UpdateResponse{Properties: props}, nil
	}
	phase := "update"
	if v := unwrap(news["update"]); v.IsNull() || (v.IsString() && v.StringValue() == "") {
		phase = "create"
	}
	outputs, err := p.runPhase(ctx, resource.URN(req.GetUrn()), news, phase, olds, req.GetTimeout())
	if err != nil {
		return nil, err
	}
	props, err := plugin.MarshalProperties(outputs, marshalOpts)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: props}, nil
}

func (p *commandProvider) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	olds, err := plugin.UnmarshalProperties(req.GetProperties(), marshalOpts)
	if err != nil {
		return nil, err
	}
	if _, err := p.runPhase(ctx, resource.URN(req.GetUrn()), olds, "delete", olds, req.GetTimeout()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (p *commandProvider) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	// A local command has no remote state to refresh: what it recorded is what exists.
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: req.GetInputs()}, nil
}

// runPhase runs the create, update or delete command and returns the new outputs.
// timeout is the resource's customTimeouts for the operation, in seconds (0: none).
func (p *commandProvider) runPhase(ctx context.Context, urn resource.URN, inputs resource.PropertyMap,
	phase string, previous resource.PropertyMap, timeout float64,
) (resource.PropertyMap, error) {
	in, problems := decodeInputs(inputs, false)
	script, problem := in.commands[phase], false
	for _, pr := range problems {
		problem = problem || pr.property == phase
	}
	if len(problems) > 0 && (script != "" || problem) {
		// An input of the wrong type is refused before anything runs. A state whose command
		// is absent runs nothing, so it is not held up by an input that would not be used.
		reasons := make([]string, len(problems))
		for i, pr := range problems {
			reasons[i] = pr.reason
		}
		return nil, fmt.Errorf("%s command of %s: %s", phase, urn.Name(), strings.Join(reasons, "; "))
	}
	outputs := inputs.Copy()
	if script == "" {
		// Nothing to run: an update keeps the previous outputs, as upstream does.
		for _, key := range []resource.PropertyKey{"stdout", "stderr"} {
			outputs[key] = resource.NewStringProperty("")
			if v, ok := previous[key]; ok && !v.IsNull() {
				outputs[key] = v
			}
		}
		return outputs, nil
	}
	interpreter := in.interpreter
	args := append(append([]string{}, interpreter[1:]...), script)
	// The command leads its own process group, so that stopping it reaches its children.
	cmd := exec.Command(interpreter[0], args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Dir = in.dir
	cmd.Env = append(os.Environ(), in.environment...)
	if in.addPreviousOutputInEnv {
		// The previous outputs, each only when it is not empty, as upstream.
		if prev := plainString(previous["stdout"]); prev != "" {
			cmd.Env = append(cmd.Env, "PULUMI_COMMAND_STDOUT="+prev)
		}
		if prev := plainString(previous["stderr"]); prev != "" {
			cmd.Env = append(cmd.Env, "PULUMI_COMMAND_STDERR="+prev)
		}
	}
	if in.stdin != "" {
		cmd.Stdin = strings.NewReader(in.stdin)
	}
	logging := in.logging
	var stdout, stderr bytes.Buffer
	// Both streams, interleaved as they arrive, for the error of a failed command.
	combined := &tailBuffer{max: maxErrorOutput}
	stdoutPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	select {
	case <-p.cancelled:
		return nil, fmt.Errorf("%s command of %s was not run: the operation was cancelled", phase, urn.Name())
	default:
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s command of %s: starting %s: %w", phase, urn.Name(), interpreter[0], err)
	}
	proc := &stopper{pgid: cmd.Process.Pid}
	finished := make(chan struct{})
	var limit <-chan time.Time
	if timeout > 0 {
		timer := time.NewTimer(time.Duration(timeout * float64(time.Second)))
		defer timer.Stop()
		limit = timer.C
	}
	go func() {
		select {
		case <-limit:
			proc.stop(fmt.Sprintf("timed out after %v", time.Duration(timeout*float64(time.Second))))
		case <-p.cancelled:
			proc.stop("was cancelled")
		case <-ctx.Done():
			proc.stop(fmt.Sprintf("was cancelled (%v)", ctx.Err()))
		case <-finished:
		}
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	status := p.startStatus(ctx, urn)
	go pump(&wg, stdoutPipe, &stdout, combined, status, logging == "stdout" || logging == "stdoutAndStderr")
	go pump(&wg, stderrPipe, &stderr, combined, status, logging == "stderr" || logging == "stdoutAndStderr")
	wg.Wait()
	status.close()
	runErr := cmd.Wait()
	close(finished)
	stopped := proc.finish()
	output := strings.TrimSuffix(combined.String(), "\n")
	if stopped != "" {
		return nil, fmt.Errorf("%s command of %s %s; its output:\n%s", phase, urn.Name(), stopped, output)
	}
	if runErr != nil {
		var exitErr *exec.ExitError
		if errors.As(runErr, &exitErr) {
			return nil, fmt.Errorf("%s command of %s failed with exit code %d; its output:\n%s",
				phase, urn.Name(), exitErr.ExitCode(), output)
		}
		return nil, fmt.Errorf("%s command of %s: %w; its output:\n%s", phase, urn.Name(), runErr, output)
	}
	outputs["stdout"] = resource.NewStringProperty(outputText(stdout.Bytes()))
	outputs["stderr"] = resource.NewStringProperty(outputText(stderr.Bytes()))
	return outputs, nil
}

// stopper stops a running command's process group: SIGTERM, then SIGKILL after killGrace
// if anything in the group still holds its output open or has not been reaped.
type stopper struct {
	pgid   int
	mu     sync.Mutex
	reason string      // why it was stopped; "" while it was not
	kill   *time.Timer // the SIGKILL to come
	killed bool
	done   bool
}

func (s *stopper) stop(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done || s.reason != "" {
		return
	}
	s.reason = reason
	_ = syscall.Kill(-s.pgid, syscall.SIGTERM)
	s.kill = time.AfterFunc(killGrace, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.done {
			s.killed = true
			_ = syscall.Kill(-s.pgid, syscall.SIGKILL)
		}
	})
}

// finish is called once the command has been reaped: nothing more is signalled. It
// says how the command was stopped, or "" when it was not.
func (s *stopper) finish() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	if s.kill != nil {
		s.kill.Stop()
	}
	switch {
	case s.reason == "":
		return ""
	case s.killed:
		return fmt.Sprintf("%s: sent SIGTERM, then SIGKILL %v later", s.reason, killGrace)
	}
	return s.reason + ": sent SIGTERM"
}

// maxLogLine bounds one line forwarded to the engine's log; the outputs keep all of it.
const maxLogLine = 64 << 10

// pump copies a stream into buf and combined and, when asked, shows each line as the
// resource's status so that a user watching `pulumi up` sees a long command's progress.
// It reads chunks, not lines: a line of any length never stops the reading (a stream
// nobody reads would block the command on a full pipe).
func pump(wg *sync.WaitGroup, r io.Reader, buf *bytes.Buffer, combined *tailBuffer, status *statusLog, forward bool) {
	defer wg.Done()
	lines := lineSplitter{emit: status.line}
	chunk := make([]byte, 64<<10)
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			buf.Write(chunk[:n])
			_, _ = combined.Write(chunk[:n])
			if forward {
				lines.write(chunk[:n])
			}
		}
		if err != nil {
			break
		}
	}
	if forward {
		lines.flush()
	}
}

// statusQueue is how many lines wait for the engine; when it is slower than the command,
// the oldest waiting lines are dropped (a status shows only the latest line anyway).
const statusQueue = 64

// statusLog sends a command's output lines to the engine as ephemeral status messages, as
// upstream does (its LogOutput calls the logger's InfoStatus for each line): they show in
// the progress display's Info column while the command runs, not as one diagnostic per
// line in the final output. They are sent from their own goroutine so that the engine's
// pace never holds up reading the command's output.
type statusLog struct {
	mu   sync.Mutex
	ch   chan string
	done chan struct{}
}

func (p *commandProvider) startStatus(ctx context.Context, urn resource.URN) *statusLog {
	s := &statusLog{ch: make(chan string, statusQueue), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for line := range s.ch {
			if p.host != nil {
				_ = p.host.LogStatus(ctx, diag.Info, urn, line)
			}
		}
	}()
	return s
}

// line queues one line; blank lines are not shown.
func (s *statusLog) line(line string) {
	if strings.TrimSpace(line) == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case s.ch <- line:
	default:
		select { // full: drop the oldest waiting line
		case <-s.ch:
		default:
		}
		s.ch <- line // the only sender holds mu, so there is room now
	}
}

// close sends the lines still waiting and returns when they are sent.
func (s *statusLog) close() {
	s.mu.Lock()
	close(s.ch)
	s.mu.Unlock()
	<-s.done
}

// lineSplitter cuts a stream into lines for the log, each at most maxLogLine bytes
// (the rest of a longer line is dropped and marked), without the line end.
type lineSplitter struct {
	emit      func(string)
	line      []byte
	truncated bool
}

func (s *lineSplitter) write(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		part := b
		if i >= 0 {
			part = b[:i]
		}
		if room := maxLogLine - len(s.line); len(part) > room {
			part, s.truncated = part[:room], true
		}
		s.line = append(s.line, part...)
		if i < 0 {
			return
		}
		s.flush()
		b = b[i+1:]
	}
}

func (s *lineSplitter) flush() {
	if len(s.line) == 0 && !s.truncated {
		return
	}
	line := strings.TrimSuffix(string(s.line), "\r")
	if s.truncated {
		line += " [line cut]"
	}
	s.emit(line)
	s.line, s.truncated = s.line[:0], false
}

// outputText is a stream as the stdout or stderr output: byte for byte, except that
// exactly one trailing "\n" is removed, as upstream 1.2.1 does (its local run() returns
// strings.TrimSuffix(buffer, "\n"): "a\r\n" becomes "a\r", "a\n\n" becomes "a\n").
// A run of bytes that are not UTF-8 becomes one U+FFFD: a protobuf string must be UTF-8
// (the SDK's MarshalProperties refuses anything else, which would fail the step).
func outputText(b []byte) string {
	return strings.ToValidUTF8(strings.TrimSuffix(string(b), "\n"), "\uFFFD")
}

// commandInputs are the inputs of a local.Command once their types are checked.
type commandInputs struct {
	commands               map[string]string // create, update, delete; "" when not given
	dir, stdin             string
	environment            []string // KEY=value, in key order
	interpreter            []string
	logging                string
	addPreviousOutputInEnv bool
}

// inputProblem is an input of the wrong type or value; reason names the input.
type inputProblem struct{ property, reason string }

// decodeInputs checks the type of every input the provider reads (upstream declares them
// as strings, a map of strings, a list of strings and a boolean, and refuses anything
// else). With allowUnknown, as in Check during a preview, an unknown value passes;
// when a command is about to run, an unknown value is a problem too.
func decodeInputs(m resource.PropertyMap, allowUnknown bool) (commandInputs, []inputProblem) {
	in := commandInputs{
		commands:               map[string]string{},
		interpreter:            []string{"/bin/sh", "-c"},
		logging:                "stdoutAndStderr",
		addPreviousOutputInEnv: true,
	}
	var problems []inputProblem
	problem := func(property, format string, args ...any) {
		problems = append(problems, inputProblem{property, fmt.Sprintf(format, args...)})
	}
	// known reports whether v can be read: false for null and for an allowed unknown.
	known := func(property, path string, v resource.PropertyValue) bool {
		switch {
		case v.IsNull():
			return false
		case v.IsComputed() || (v.IsOutput() && !v.OutputValue().Known):
			if !allowUnknown {
				problem(property, "%s is unknown", path)
			}
			return false
		}
		return true
	}
	str := func(key string) (string, bool) {
		v := unwrap(m[resource.PropertyKey(key)])
		if !known(key, key, v) {
			return "", false
		}
		if !v.IsString() {
			problem(key, "%s must be a string, not %s", key, describe(v))
			return "", false
		}
		return v.StringValue(), true
	}
	for _, key := range []string{"create", "update", "delete"} {
		in.commands[key], _ = str(key)
	}
	in.dir, _ = str("dir")
	in.stdin, _ = str("stdin")
	if logging, ok := str("logging"); ok {
		switch logging {
		case "stdout", "stderr", "stdoutAndStderr", "none":
			in.logging = logging
		default:
			problem("logging", "logging %q is not one of stdout, stderr, stdoutAndStderr, none", logging)
		}
	}
	if env := unwrap(m["environment"]); known("environment", "environment", env) {
		if !env.IsObject() {
			problem("environment", "environment must be a map of strings, not %s", describe(env))
		} else {
			obj := env.ObjectValue()
			for _, k := range obj.StableKeys() {
				path := "environment." + string(k)
				v := unwrap(obj[k])
				if k == "" || strings.ContainsAny(string(k), "=\x00") {
					problem("environment", "environment key %q is not a valid variable name", string(k))
				} else if !known("environment", path, v) {
					continue
				} else if !v.IsString() {
					problem("environment", "%s must be a string, not %s", path, describe(v))
				} else {
					in.environment = append(in.environment, string(k)+"="+v.StringValue())
				}
			}
		}
	}
	if interp := unwrap(m["interpreter"]); known("interpreter", "interpreter", interp) {
		if !interp.IsArray() {
			problem("interpreter", "interpreter must be a list of strings, not %s", describe(interp))
		} else if elems := interp.ArrayValue(); len(elems) > 0 {
			// An empty list means the default, as upstream.
			in.interpreter = make([]string, 0, len(elems))
			for i, e := range elems {
				path := fmt.Sprintf("interpreter[%d]", i)
				if e = unwrap(e); !known("interpreter", path, e) {
					if e.IsNull() {
						problem("interpreter", "%s must be a string, not null", path)
					}
				} else if !e.IsString() {
					problem("interpreter", "%s must be a string, not %s", path, describe(e))
				} else {
					in.interpreter = append(in.interpreter, e.StringValue())
				}
			}
		}
	}
	if addPrev := unwrap(m["addPreviousOutputInEnv"]); known("addPreviousOutputInEnv", "addPreviousOutputInEnv", addPrev) {
		if !addPrev.IsBool() {
			problem("addPreviousOutputInEnv", "addPreviousOutputInEnv must be a boolean, not %s", describe(addPrev))
		} else {
			in.addPreviousOutputInEnv = addPrev.BoolValue()
		}
	}
	return in, problems
}

// describe names the type of a value in an error message.
func describe(v resource.PropertyValue) string {
	switch {
	case v.IsString():
		return "a string"
	case v.IsNumber():
		return "a number"
	case v.IsBool():
		return "a boolean"
	case v.IsArray():
		return "a list"
	case v.IsObject():
		return "a map"
	case v.IsAsset():
		return "an asset"
	case v.IsArchive():
		return "an archive"
	case v.IsResourceReference():
		return "a resource reference"
	}
	return v.TypeString()
}

func unwrap(v resource.PropertyValue) resource.PropertyValue {
	for v.IsSecret() {
		v = v.SecretValue().Element
	}
	return v
}

func plainString(v resource.PropertyValue) string {
	v = unwrap(v)
	if v.IsString() {
		return v.StringValue()
	}
	return ""
}

// tailBuffer keeps the last max bytes written to it (and counts the rest); writers may be
// concurrent. Upstream's error carries all of a failed command's output; this bounds it
// so that a runaway command cannot make an error too large to send to the engine.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	buf   []byte
	total int64
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total += int64(len(p))
	b.buf = append(b.buf, p...)
	if len(b.buf) > 2*b.max {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

// String is the kept output, as valid UTF-8, after a line saying how much was cut.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := b.buf
	if len(kept) > b.max {
		kept = kept[len(kept)-b.max:]
		for len(kept) > 0 && !utf8.RuneStart(kept[0]) {
			kept = kept[1:]
		}
	}
	text := strings.ToValidUTF8(string(kept), "\uFFFD")
	if cut := b.total - int64(len(kept)); cut > 0 {
		return fmt.Sprintf("[... %d bytes of earlier output cut ...]\n%s", cut, text)
	}
	return text
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
