package resolver

import (
	"context"
	"fmt"
	"log/slog"
)

type level = slog.Level

const (
	levelDebug = slog.LevelDebug
	levelInfo  = slog.LevelInfo
	levelWarn  = slog.LevelWarn
	levelError = slog.LevelError
)

// logAdapter passes nats-server's log lines to slog, through the start's
// progress tracker. Debug and trace are never turned on: at those levels
// the server prints protocol lines, which can carry JWTs.
type logAdapter struct {
	log *slog.Logger
	st  *startup
}

func (l logAdapter) Noticef(format string, v ...any) { l.logf(levelInfo, format, v) }
func (l logAdapter) Warnf(format string, v ...any)   { l.logf(levelWarn, format, v) }
func (l logAdapter) Errorf(format string, v ...any)  { l.logf(levelError, format, v) }
func (l logAdapter) Debugf(format string, v ...any)  { l.logf(levelDebug, format, v) }
func (l logAdapter) Tracef(format string, v ...any)  {}

// Fatalf is called when the server cannot go on; it then stops what it
// was doing. nats-server's own loggers exit the process here; latch
// instead fails the start, or stops serving, with the reason, so that
// it can say what to do and shut down cleanly.
func (l logAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if l.st.stopping.Load() && !l.st.ready.Load() {
		// Stopped while recovering, the recovery fails ("Can't start
		// JetStream: … server is not running"): the stop's doing.
		l.log.Debug(msg)
		return
	}
	l.log.Error(msg)
	l.st.fatal(msg)
}

func (l logAdapter) logf(lvl level, format string, v []any) {
	if l.st.stopped.Load() {
		return
	}
	lvl = l.st.line(format, lvl)
	if !l.log.Enabled(context.Background(), lvl) {
		return
	}
	l.log.Log(context.Background(), lvl, fmt.Sprintf(format, v...))
}
