import sys

from keras_kd.cli import main

sys.exit(main())
