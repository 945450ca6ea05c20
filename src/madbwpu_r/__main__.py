from madbwpu_r.cli.main import main

main()
