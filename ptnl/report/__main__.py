from ptnl.report.cli import main

raise SystemExit(main())
