import CURecPluginHost

// One isolated plugin instance, started and supervised by curecd (see docs/isolation.md).
PluginWorker.main(arguments: CommandLine.arguments)
