"""The `penumbra` command: one entry point that dispatches to flight, ground and hil subcommands."""
