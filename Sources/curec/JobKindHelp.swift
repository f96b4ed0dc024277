// Made from the job kinds' parameter declarations (`JobKindParameters` in CURecServer):
// `CUREC_UPDATE_DOCS=1 swift test --filter DocsTables` rewrites it, and that test fails
// while it differs from the declarations.

/// The parameters of every job kind, for `curec jobs submit --help`.
enum JobKindHelp {
    static let text = #"""
PLACEHOLDER
"""#
}
