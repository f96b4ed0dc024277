import Foundation

/// What a stage hands back to be recorded: numbers and per-step curves.
public struct PipelineStageOutput: Sendable {
    public var metrics: [String: Double]
    /// Per-step curves (e.g. `loss`, `reward`, `kl`, `length`).
    public var curves: [String: [Double]]

    public init(metrics: [String: Double] = [:], curves: [String: [Double]] = [:]) {
        self.metrics = metrics
        self.curves = curves
    }
}

/// One row of the pipeline's stage table (``PipelineRunner/stages``): a name, the stop point
/// it belongs to, the stages whose outputs it reads, how it runs and how it is recorded.
///
/// The runner does all the bookkeeping: it skips a recorded stage, checks cancellation,
/// times the run, wraps its errors, records it in `stages.json` and then removes its scratch
/// directories. A stage only produces files in the workspace and returns its numbers.
struct PipelineStageDefinition {
    /// How a finished stage is recorded.
    enum Recording {
        /// In `stages.json`; a later run on the workspace skips it.
        case once
        /// Not recorded: it runs on every run that reaches it (the report).
        case everyRun
    }

    /// The record name (unique in the table).
    let name: String
    /// The stop point it belongs to: `run(through: group)` runs it.
    let group: PipelineStage
    /// Names of earlier stages whose outputs it reads.
    let inputs: [String]
    let recording: Recording
    /// Workspace-relative directories the stage resumes from (its own checkpoints), removed
    /// once the stage is recorded.
    let scratch: [String]
    let run: () throws -> PipelineStageOutput

    init(_ name: String, group: PipelineStage, inputs: [String] = [], recording: Recording = .once,
         scratch: [String] = [], run: @escaping () throws -> PipelineStageOutput) {
        self.name = name
        self.group = group
        self.inputs = inputs
        self.recording = recording
        self.scratch = scratch
        self.run = run
    }

    init(_ group: PipelineStage, inputs: [String] = [], recording: Recording = .once, scratch: [String] = [],
         run: @escaping () throws -> PipelineStageOutput) {
        self.init(group.rawValue, group: group, inputs: inputs, recording: recording, scratch: scratch, run: run)
    }

    /// Why a table is malformed, or nil: names must be unique, groups in order, and every
    /// input an earlier recorded stage.
    static func problem(in table: [PipelineStageDefinition]) -> String? {
        var seen: [String: Recording] = [:]
        var group = PipelineStage.allCases[0]
        for stage in table {
            if seen[stage.name] != nil { return "stage \(stage.name) is declared twice" }
            if stage.group < group { return "stage \(stage.name) (\(stage.group.rawValue)) comes after a \(group.rawValue) stage" }
            for input in stage.inputs {
                guard let recording = seen[input] else { return "stage \(stage.name) reads \(input), which does not run before it" }
                if case .everyRun = recording { return "stage \(stage.name) reads \(input), which is never recorded" }
            }
            seen[stage.name] = stage.recording
            group = stage.group
        }
        return nil
    }
}
