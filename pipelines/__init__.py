"""Entry points of labelbeam: options, config loading and the job graphs."""
