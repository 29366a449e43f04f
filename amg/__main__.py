from amg.cli import main

raise SystemExit(main())
