//! What a stage prints, on its way to the observer: split into capped lines, masked with the
//! secrets of the whole run, and counted against the stage's log limit.

use super::*;

/// The masker of a stage: its own secrets and the run's others.
pub(super) fn stage_masker(input: &StageInput) -> Masker {
    let values: Vec<&str> = input
        .secrets
        .iter()
        .map(|(_, v)| v.as_str())
        .chain(input.mask.iter().map(String::as_str))
        .collect();
    Masker::new(&values)
}

/// Masks every line and message on its way to the real observer.
pub(super) struct Masking<'a> {
    pub(super) inner: &'a dyn Observer,
    pub(super) masker: &'a Masker,
}

impl Observer for Masking<'_> {
    fn stage_started(&self, stage: &PlannedStage) {
        self.inner.stage_started(stage);
    }

    fn log_line(&self, stage: &PlannedStage, stream: StreamKind, line: &str) {
        if self.masker.is_empty() {
            self.inner.log_line(stage, stream, line);
        } else {
            self.inner
                .log_line(stage, stream, &self.masker.mask_str(line));
        }
    }

    fn stage_finished(&self, stage: &PlannedStage, result: &StageResult) {
        self.inner.stage_finished(stage, result);
    }
}

/// Splits a stage's output into lines per stream, enforces the log cap, and hands lines on.
pub(super) struct LogSink<'a> {
    stage: &'a PlannedStage,
    observer: &'a dyn Observer,
    stdout: LineSplitter,
    stderr: LineSplitter,
    /// Masking happens on the raw bytes, before lines are cut, so nothing escapes at a cut.
    mask_out: MaskStream,
    mask_err: MaskStream,
    written: usize,
    limit: usize,
    capped: bool,
}

impl<'a> LogSink<'a> {
    pub(super) fn new(
        config: &EngineConfig,
        stage: &'a PlannedStage,
        masker: &Masker,
        observer: &'a dyn Observer,
    ) -> Self {
        LogSink {
            stage,
            observer,
            stdout: LineSplitter::new(config.max_line),
            stderr: LineSplitter::new(config.max_line),
            mask_out: masker.stream(),
            mask_err: masker.stream(),
            written: 0,
            limit: config.log_limit,
            capped: false,
        }
    }

    pub(super) fn push(&mut self, out: &bollard::container::LogOutput) {
        use bollard::container::LogOutput;
        let (bytes, kind) = match out {
            LogOutput::StdErr { message } => (message, StreamKind::Stderr),
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                (message, StreamKind::Stdout)
            }
            LogOutput::StdIn { .. } => return,
        };
        if self.capped {
            return;
        }
        self.written += bytes.len();
        let (stage, observer) = (self.stage, self.observer);
        let emit = |line: &[u8]| observer.log_line(stage, kind, &String::from_utf8_lossy(line));
        match kind {
            StreamKind::Stderr => {
                let masked = self.mask_err.push(bytes);
                self.stderr.push(&masked, emit)
            }
            _ => {
                let masked = self.mask_out.push(bytes);
                self.stdout.push(&masked, emit)
            }
        }
        if self.written > self.limit {
            self.capped = true;
            self.observer.log_line(
                self.stage,
                StreamKind::System,
                &format!(
                    "log limit of {} reached; further output of this stage is discarded",
                    fmt_size(self.limit as u64)
                ),
            );
        }
    }

    pub(super) fn finish(&mut self) {
        let (stage, observer) = (self.stage, self.observer);
        let out =
            |l: &[u8]| observer.log_line(stage, StreamKind::Stdout, &String::from_utf8_lossy(l));
        let err =
            |l: &[u8]| observer.log_line(stage, StreamKind::Stderr, &String::from_utf8_lossy(l));
        // What the maskers held back for a possible split secret is complete now.
        let rest = self.mask_out.finish();
        if !self.capped {
            self.stdout.push(&rest, out);
        }
        let rest = self.mask_err.finish();
        if !self.capped {
            self.stderr.push(&rest, err);
        }
        self.stdout.finish(out);
        self.stderr.finish(err);
    }
}
