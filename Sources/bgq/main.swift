import BGQCLI

BGQCommand.runAsMain()
