from govc.cli import main

main()
