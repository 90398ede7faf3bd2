import sys

from keras_kd.src.cli.cli import main

sys.exit(main())
