from servemark.cli.main import main

main()
