from servemark.stub.server import main

main()
